"""The library leaves its host alone; the command line quiets TensorFlow for itself (cli/host.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def _run(code: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


def test_importing_the_library_changes_no_environment_or_logger():
    done = _run(
        """
        import logging, os
        import tensorflow  # sets variables of its own (TF2_BEHAVIOR, …): not the library's doing
        before = dict(os.environ)
        import multiscale
        from multiscale._tf import tf
        from multiscale.measure import backbone
        from multiscale.objectives import texture
        from multiscale.jobs import synthesize
        assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
        assert logging.getLogger("tensorflow").level == logging.NOTSET
        """
    )
    assert done.returncode == 0, done.stderr


def test_the_cli_starts_tensorflow_quietly_and_only_when_needed():
    done = _run(
        """
        import logging, os, sys
        from multiscale_cli import host
        host.configure()
        host.configure()  # idempotent
        assert "tensorflow" not in sys.modules
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == host.TF_LOG_LEVEL
        from multiscale._tf import tf
        assert tf.get_logger().level == logging.ERROR
        assert not any(isinstance(f, host._QuietStart) for f in sys.meta_path)
        # the module keeps its own loader
        assert type(tf.__spec__.loader).__name__ == "SourceFileLoader"
        assert "exec_module" not in vars(tf.__spec__.loader)
        print("done", file=sys.stderr)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "done\n"


def test_a_users_tensorflow_log_level_wins():
    done = _run(
        """
        import logging, os, sys
        from multiscale_cli import host
        host.configure()
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
        assert logging.getLogger("tensorflow").level == logging.NOTSET
        assert not any(isinstance(f, host._QuietStart) for f in sys.meta_path)
        """,
        TF_CPP_MIN_LOG_LEVEL="1",
    )
    assert done.returncode == 0, done.stderr
