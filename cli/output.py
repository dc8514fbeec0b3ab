"""Where a command's files go, checked before the long work starts, and how they are written."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiscale.config import StyleConfig, SynthesisConfig
from multiscale.errors import OutputError
from multiscale.io import (
    atomic_outputs,
    check_output_format,
    check_writable,
    save_image,
    temp_beside,
    write_json_atomic,
)
from multiscale.jobs.checkpoint import default_folder, find_checkpoint

from .errors import Interrupted


@dataclass
class OutputPlan:
    """The files one run writes: the image, its JSON, intermediates.

    Every target is checked up front (exists without ``--overwrite``, folder
    missing, format unable to hold the bit depth) so a long run is never
    lost to a refusal at the end.
    """

    image: Path
    metadata: Path
    bit_depth: int
    overwrite: bool
    save_every: int | None
    resumable: bool = True
    frames: int = 1
    animation: Path | None = None
    checkpoint: Path | None = None
    #: What :meth:`save_result` wrote (None: not yet).
    written: list[Path] | None = None
    #: The last progress of the run (:meth:`maybe_save_intermediate`), for :meth:`save_best_now`.
    latest: Any = field(default=None, init=False, repr=False)
    #: Whether :meth:`save_best_now` wrote the image (the result then replaces it).
    saved_early: bool = field(default=False, init=False, repr=False)
    #: The ``--count`` series this is one variation of (:class:`SeriesPlan`): it then writes through it.
    series: SeriesPlan | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def for_run(
        cls,
        *,
        output: str | None,
        default_stem: str,
        config: SynthesisConfig | StyleConfig,
        overwrite: bool,
    ) -> OutputPlan:
        """Plan and check the outputs of a run (``output`` None: STEM.png here)."""
        image = Path(output) if output else Path(f"{default_stem}.png")
        plan = cls(
            image=image,
            metadata=image.with_name(image.name + ".json"),
            bit_depth=config.bit_depth,
            overwrite=overwrite,
            save_every=config.save_every,
            # stylize checkpoints with either optimizer (with lbfgsb a resume restarts
            # the stage's optimiser from its best image); synthesize resumes exactly,
            # which needs the projected optimizer's state.
            resumable=isinstance(config, StyleConfig) or config.optimizer == "projected",
        )
        check_output_format(image, bit_depth=config.bit_depth)
        check_writable(plan.image, overwrite=overwrite)
        check_writable(plan.metadata, overwrite=overwrite)
        if plan.save_every and not overwrite:
            # Matched by name, not glob(): a stem may hold "[" or "*".
            prefix, suffix = f"{image.stem}.iter", image.suffix
            existing = sorted(
                p for p in image.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)
            )
            if existing:
                raise OutputError(
                    f"{existing[0]}: intermediate image from an earlier run exists; use --overwrite "
                    "or another --output"
                )
        return plan

    def intermediate(self, iteration: int) -> Path:
        """Path of the image saved after ``iteration``."""
        return self.image.with_name(f"{self.image.stem}.iter{iteration:05d}{self.image.suffix}")

    def maybe_save_intermediate(self, progress: Any) -> None:
        """Save ``progress.image`` if the iteration is a multiple of ``save_every``; keep ``progress``."""
        self.latest = progress
        if self.save_every and progress.image is not None and progress.iteration % self.save_every == 0:
            save_image(
                self.intermediate(progress.iteration),
                np.clip(progress.image, 0.0, 1.0),
                bit_depth=self.bit_depth,
                overwrite=True,
            )

    def variation(self, index: int, count: int) -> OutputPlan:
        """The plan of variation ``index`` of ``count``: ``out.png`` → ``out.001.png``."""
        image = self.image.with_name(f"{self.image.stem}.{index + 1:03d}{self.image.suffix}")
        return dataclasses.replace(self, image=image, metadata=image.with_name(image.name + ".json"))

    def check(self, *, frames: int = 1, animation: str | None = None, checkpoint: str | None = None) -> None:
        """Plan and check the files of animation frames and of the checkpoint folder.

        Frames go to ``out.frame0001.png`` …, the animation to ``animation``
        (default ``out.webp``). A resumable run (stylize, or synthesize with
        the projected optimizer) writes a checkpoint folder (default
        ``out.png.ckpt``) on Ctrl-C or every ``--checkpoint-every``
        iterations: an existing one is from an earlier run and is refused
        without ``--overwrite``.
        """
        from multiscale.jobs.animate import frame_path

        check_writable(self.image, overwrite=self.overwrite)
        check_writable(self.metadata, overwrite=self.overwrite)
        self.frames = frames
        if frames > 1:
            self.animation = Path(animation) if animation else self.image.with_suffix(".webp")
            for i in range(frames):
                check_writable(frame_path(self.image, i), overwrite=self.overwrite)
            check_writable(self.animation, overwrite=self.overwrite)
        elif animation:
            raise OutputError(f"{animation}: --animation needs --frames 2 or more")
        if self.resumable:
            self.checkpoint = Path(checkpoint) if checkpoint else default_folder(self.image)
            if find_checkpoint(self.checkpoint) is not None and not self.overwrite:
                raise OutputError(
                    f"{self.checkpoint}: a checkpoint from an earlier run exists; continue it with "
                    f"`multiscale resume {self.checkpoint}`, or use --overwrite or another --checkpoint"
                )
        elif checkpoint:
            raise OutputError(f"{checkpoint}: checkpoints need --optimizer projected")

    def save_best_now(self) -> None:
        """Write the best image so far (no JSON) at once: the action of a stop signal.

        Runs in :func:`~multiscale_cli.errors.at_stop_signal`'s helper thread
        while the main thread may still be inside an evaluation; the result,
        with its JSON, replaces the image when the run has stopped. Synthesis
        of one image only (a stylize progress holds no best image at the
        output's size, frames are many).
        """
        if self.series is not None:
            self.series.save_best_now(self)
            return
        with self._lock:
            best = self.best_so_far()
            if best is not None:
                save_image(self.image, best, bit_depth=self.bit_depth, overwrite=True)
                self.saved_early = True

    def best_so_far(self) -> np.ndarray | None:
        """A copy of the run's best image so far, clipped to [0, 1]; None once the result is saved.

        None too for frames and for a style transfer (its progress holds no
        best image at the output's size).
        """
        best = getattr(self.latest, "best_image", None)
        if best is None or self.frames > 1 or self.written is not None:
            return None
        # a copy: the driver does not write it during an evaluation, but will after
        return np.clip(np.array(best, dtype=np.float32), 0.0, 1.0)

    def save_result(self, result: Any) -> list[Path]:
        """Save a run's result (its ``image`` and ``report``) once; the library's ``on_result`` hook.

        A run hands its result here before it writes the checkpoint of a
        stop, so the best image is on disk first. A second Ctrl-C or signal
        during the write ends the command (the file being written is not
        replaced, the others are complete).
        """
        if self.written is None:
            try:
                with self._lock:  # after save_best_now, if it is writing
                    if self.series is not None:
                        self.written = self.series.save_result(self, result)
                    else:
                        self.written = self.save(result.image, result.report.to_dict())
            except KeyboardInterrupt:
                raise Interrupted(
                    f"interrupted while writing {self.image}; files already there are complete"
                ) from None
        return self.written

    def save(self, image: np.ndarray, metadata: dict[str, Any]) -> list[Path]:
        """Write the image (or frames and animation), then the JSON, all atomically.

        Returns the image files written, the main one first.
        """
        if self.frames > 1:
            from multiscale.jobs.animate import save_frames

            written = save_frames(
                self.image,
                image,
                animation=self.animation,
                bit_depth=self.bit_depth,
                overwrite=self.overwrite,
            )
            written = [written[-1], *written[:-1]]
        else:
            overwrite = self.overwrite or self.saved_early
            written = [save_image(self.image, image, bit_depth=self.bit_depth, overwrite=overwrite)]
        write_json_atomic(self.metadata, metadata, overwrite=self.overwrite)
        return written


#: A file to put in place and how to write it to a (temporary) path.
_Writer = tuple[Path, Callable[[Path], object]]


def _write_to(tmp: Path, target: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)``, an error naming ``target`` (the temporary name means nothing to a user)."""
    try:
        write(tmp)
    except OutputError as exc:
        reason = getattr(exc.__cause__, "strerror", None) or exc
        raise OutputError(f"{target}: cannot write: {reason}") from exc


@dataclass
class SeriesPlan:
    """The files of ``synthesize --count N``: N variations whose images and JSONs appear as one set.

    A finished variation's image and JSON are written at once, under
    temporary names beside their targets (``.v.001.png.XXXXXXXX.tmp.png``),
    and all are renamed into place together when the last one is done
    (:func:`multiscale.io.atomic_outputs`). An error (a full disk), ``kill
    -9`` or a crash before then leaves the files of an earlier series as
    they were.

    A stop (Ctrl-C, SIGTERM, SIGHUP, a numerical failure) keeps what was
    made: the variations finished so far and the stopped one's best image,
    with their JSONs, are put in place as one set under their usual names;
    the rest of an earlier series (there only with ``--overwrite``) is
    removed, so the folder never holds two series mixed.
    """

    plans: list[OutputPlan]
    overwrite: bool
    #: The image and JSON paths put in place, in order (None: nothing yet).
    written: list[Path] | None = None
    #: (target, temporary file) of the finished variations, in order.
    _staged: list[tuple[Path, Path]] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def of(cls, out: OutputPlan, count: int) -> SeriesPlan:
        """The series of ``count`` variations of ``out`` (``out.png`` → ``out.001.png`` …)."""
        series = cls(plans=[out.variation(i, count) for i in range(count)], overwrite=out.overwrite)
        for plan in series.plans:
            plan.series = series
        return series

    def __enter__(self) -> SeriesPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        """Remove the temporary files of variations that were never put in place."""
        with self._lock:
            for _, tmp in self._staged:
                tmp.unlink(missing_ok=True)
            self._staged = []

    @staticmethod
    def _writers(plan: OutputPlan, image: np.ndarray, metadata: dict[str, Any] | None) -> list[_Writer]:
        writers: list[_Writer] = [
            (plan.image, lambda p: save_image(p, image, bit_depth=plan.bit_depth, overwrite=True))
        ]
        if metadata is not None:
            writers.append((plan.metadata, lambda p: write_json_atomic(p, metadata, overwrite=True)))
        return writers

    def save_result(self, plan: OutputPlan, result: Any) -> list[Path]:
        """Keep a variation's result: staged if it finished, the set put in place if it stopped."""
        report = result.report
        if report.interrupted or report.stop_reason == "non_finite":
            return self._save_stopped(plan, result)
        staged: list[tuple[Path, Path]] = []
        try:
            for target, write in self._writers(plan, result.image, report.to_dict()):
                staged.append((target, temp_beside(target)))
                _write_to(staged[-1][1], target, write)
        except BaseException:
            for _, tmp in staged:
                tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            self._staged.extend(staged)
        return [plan.image]

    def _save_stopped(self, plan: OutputPlan, result: Any) -> list[Path]:
        with self._lock:
            if self.written is None:
                self._commit(self._writers(plan, result.image, result.report.to_dict()))
                return [plan.image]
        # the set is in place already (save_best_now): the result and its JSON join it
        written = plan.save(result.image, result.report.to_dict())
        with self._lock:
            done = self.written or []
            self.written = done + [p for p in (plan.image, plan.metadata) if p not in done]
        return written

    def save_best_now(self, plan: OutputPlan) -> None:
        """At a stop signal: put the finished variations and ``plan``'s best image so far in place.

        Runs in :func:`~multiscale_cli.errors.at_stop_signal`'s helper thread;
        ``plan``'s result with its JSON replaces the early image when its run
        has stopped.
        """
        with plan._lock, self._lock:
            if self.written is not None:
                return
            best = plan.best_so_far()
            extra = [] if best is None else self._writers(plan, best, None)
            self._commit(extra)
            plan.saved_early = best is not None

    def commit(self) -> list[Path]:
        """Put the finished variations in place (all, or those before a stop) unless done; return the images."""
        with self._lock:
            if self.written is None:
                self._commit([])
            return self.images()

    def images(self) -> list[Path]:
        """The images put in place, in order (a stopped variation's last)."""
        written = set(self.written or ())
        return [plan.image for plan in self.plans if plan.image in written]

    def _commit(self, extra: list[_Writer]) -> None:
        """Put the staged files and ``extra`` in place as one set, then drop an earlier series' rest."""
        staged = self._staged
        targets = [target for target, _ in staged] + [target for target, _ in extra]
        if not targets:  # nothing made yet: an earlier series stays as it was
            return
        with atomic_outputs(targets, overwrite=self.overwrite) as tmps:
            # the new files first: the finished ones are moved in only when nothing is left to fail
            for (target, write), tmp in zip(extra, tmps[len(staged) :], strict=True):
                _write_to(tmp, target, write)
            for (_, done), tmp in zip(staged, tmps[: len(staged)], strict=True):
                os.replace(done, tmp)
        self._staged, self.written = [], targets
        if self.overwrite:  # what is left of an earlier series (a stopped one's JSON comes next)
            for plan in self.plans:
                for path in (plan.image, plan.metadata):
                    if path not in targets:
                        path.unlink(missing_ok=True)
