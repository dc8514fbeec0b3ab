"""Where a command's files go, checked before the long work starts."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiscale.config import StyleConfig, SynthesisConfig
from multiscale.errors import OutputError
from multiscale.io import check_output_format, check_writable, save_image, write_json_atomic
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
            # stylize checkpoints with either optimizer (a resume restarts the
            # stage's optimiser from its best image); synthesize resumes
            # exactly, which needs the projected optimizer's state.
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
        best = getattr(self.latest, "best_image", None)
        if best is None or self.frames > 1:
            return
        best = np.array(best, dtype=np.float32)  # the driver does not write it during an evaluation
        with self._lock:
            if self.written is None:
                save_image(self.image, np.clip(best, 0.0, 1.0), bit_depth=self.bit_depth, overwrite=True)
                self.saved_early = True

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
