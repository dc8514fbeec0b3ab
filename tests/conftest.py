"""Shared fixtures: tiny files written on the fly, good and bad."""

from __future__ import annotations

import functools
import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def build_png(
    samples: np.ndarray,
    *,
    colour_type: int,
    bit_depth: int = 16,
    claim_size: tuple[int, int] | None = None,
) -> bytes:
    """A PNG written by hand (filter 0, valid CRCs), for cases Pillow cannot write.

    ``samples`` is (H, W, C) unsigned integers; ``claim_size`` = (width,
    height) puts another size in IHDR than the data has (a bomb header).
    """
    height, width = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else np.uint8
    rows = b"".join(b"\x00" + samples[y].astype(dtype).tobytes() for y in range(height))
    w, h = claim_size or (width, height)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


@pytest.fixture
def png_builder() -> Callable[..., bytes]:
    """:func:`build_png`, for tests that need hand-made PNG bytes."""
    return build_png


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def bad_image_files(tmp_path: Path) -> dict[str, Path]:
    """Files that no image reader should accept, by name of the fault.

    Keys: missing, directory, zero_bytes, text, random_bytes, truncated_png,
    truncated_jpeg, bomb_png (IHDR claims 50000×50000, file < 100 bytes).
    """
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    png, jpeg = _encoded(noise, "PNG"), _encoded(noise, "JPEG")
    contents = {
        "zero_bytes": b"",
        "text": b"This is a text file, not an image.\n" * 4,
        "random_bytes": rng.integers(0, 256, 2048, dtype=np.uint8).tobytes(),
        "truncated_png": png[: len(png) // 2],
        "truncated_jpeg": jpeg[: len(jpeg) // 2],
        "bomb_png": build_png(
            np.zeros((1, 1, 3), np.uint8), colour_type=2, bit_depth=8, claim_size=(50000, 50000)
        ),
    }
    suffix = {"truncated_png": ".png", "truncated_jpeg": ".jpg", "bomb_png": ".png", "text": ".png"}
    files = {}
    for name, data in contents.items():
        path = tmp_path / f"{name}{suffix.get(name, '.bin')}"
        path.write_bytes(data)
        files[name] = path
    files["missing"] = tmp_path / "missing.png"
    files["directory"] = tmp_path / "folder.png"
    files["directory"].mkdir()
    return files


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The repository's sample source photos (see samples/PROVENANCE.md)."""
    return Path(__file__).resolve().parent.parent / "samples" / "sources"


def _interrupt_cli(args: list[str], *, cwd: Path, wait_for: Path, timeout: float = 60) -> tuple[int, str]:
    """Run ``multiscale ARGS`` in a real subprocess and press Ctrl-C once ``wait_for`` exists.

    Returns the exit status and stderr. A shell started in the background
    may leave SIGINT ignored in its children; a terminal user's Python has
    the default handler, so the child sets it.
    """
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from multiscale_cli.main import cli; cli()"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not wait_for.exists():  # e.g. the first intermediate: the optimiser is iterating
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, f"no {wait_for.name} within {timeout} s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stderr


@pytest.fixture(scope="session")
def interrupt_cli() -> Callable[..., tuple[int, str]]:
    """:func:`_interrupt_cli`: a real CLI subprocess, interrupted mid-run."""
    return _interrupt_cli


def _stopped_run(*sources: Any, stop_at: int, folder: Path, **options: Any) -> Any:
    """``run_synthesis(*sources, **options)`` stopped by its callback after iteration ``stop_at``,
    with its checkpoint in ``folder / "ck"`` (its output would go to ``folder / "o.png"``)."""
    from multiscale.jobs.synthesize import run_synthesis

    return run_synthesis(
        *sources, callback=lambda p: p.iteration == stop_at, checkpoint=folder / "ck", output=folder / "o.png",
        **options,
    )  # fmt: skip


@pytest.fixture
def stopped_run(tmp_path: Path) -> Callable[..., Any]:
    """:func:`_stopped_run` checkpointing into ``tmp_path / "ck"``; ``resume_synthesis(tmp_path / "ck")`` goes on."""
    return functools.partial(_stopped_run, folder=tmp_path)
