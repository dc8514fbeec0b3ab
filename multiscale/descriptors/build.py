"""Build Gram descriptors over sets of photos: streaming, locally or on a Dask cluster.

:func:`build_descriptor` expands files, folders and glob patterns into a list
of images, then reads, measures and adds them to a
:class:`~multiscale.descriptors.descriptor.GramDescriptor` one at a time, so memory does
not grow with the number of photos (unless every Gram is kept for the
affine-invariant join). A file that cannot be used (unreadable, not an image,
too small for the octaves, …) is skipped and reported with its reason; no
usable image at all is an error.

With a Dask distributed cluster (``dask=ADDRESS`` or a ``Client``, or
``workers=N`` for a local one) the list is cut into chunks; each task builds
a partial descriptor over its chunk and the client merges the partials in
list order. The merge is exact (sums and counts add), so the result equals
the local build to float64 round-off. Workers open the files by absolute
path: a remote cluster needs the photos on a file system the workers share.

Per-image weights come from a CSV file (:func:`read_image_weights`).

When the config's ``statistics`` include ``sliced``, each image's quantile
functions are measured too and the descriptor holds a quantile bank
(:class:`multiscale.measure.sliced.QuantileBank`); it merges exactly like the
Grams, so a Dask build's bank equals a local build's to round-off. With
``mean``, each image's mean feature vectors are summed the same way (from the
pass that measures its Grams).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DEFAULT_MAX_INPUT_PIXELS, DescriptorConfig
from ..errors import ConfigError, ImageError, MultiscaleError, ResourceError
from ..io import PathLike, file_sha256, list_images, load_image, scale_source
from ..layers import layer_channels
from ..measure.memory import available_memory_bytes
from .descriptor import GramDescriptor, keep_all_nbytes

logger = logging.getLogger(__name__)

#: Listing reasons (from :func:`multiscale.io.list_images`) that concern a
#: file a user may have meant as an image; hidden files and sub-folders are
#: left out of the "ignored" report.
_NOTEWORTHY_IGNORED = ("not an image file extension", "broken link", "not a regular file")

#: Largest per-image weights file read (64 MiB ≈ a million lines).
MAX_WEIGHTS_FILE_BYTES = 64 * 1024**2

#: Chunks per worker when the chunk size is left to :func:`build_descriptor`:
#: several, so a slow chunk does not leave the other workers idle at the end.
CHUNKS_PER_WORKER = 4

#: Largest automatic chunk: bounds the work lost when a worker dies.
MAX_AUTO_CHUNK = 64

__all__ = [
    "BuildProgress",
    "BuildResult",
    "ClusterError",
    "SkippedImage",
    "UsedImage",
    "build_descriptor",
    "find_images",
    "read_image_weights",
]


class ClusterError(MultiscaleError, ConnectionError):
    """Dask is missing, the scheduler cannot be reached, or a worker died."""


@dataclass(frozen=True)
class SkippedImage:
    """A file that was not used, and why.

    Attributes
    ----------
    name : str
        The path as listed (what the user typed, joined with folder entries).
    reason : str
        What was wrong, without the leading file name.
    """

    name: str
    reason: str


@dataclass(frozen=True)
class UsedImage:
    """An image that went into the descriptor.

    Attributes
    ----------
    name : str
        The path as listed; also the name recorded in the descriptor.
    sha256 : str
        Hex digest of the file's bytes.
    weight : float
    height, width : int
        Size in pixels after ``source_scale`` / ``source_width``.
    """

    name: str
    sha256: str
    weight: float
    height: int
    width: int


@dataclass(frozen=True)
class BuildProgress:
    """What a build's progress callback receives after each image (or chunk, on Dask).

    Attributes
    ----------
    done : int
        Images processed so far, used or skipped.
    total : int
        Images listed.
    used, skipped : int
        How ``done`` splits.
    name : str or None
        The last image processed (``None`` for a Dask chunk).
    elapsed_s : float
        Seconds since the build started.
    """

    done: int
    total: int
    used: int
    skipped: int
    name: str | None
    elapsed_s: float


@dataclass
class BuildResult:
    """A built descriptor and an account of every file.

    Attributes
    ----------
    descriptor : GramDescriptor
    used : list of UsedImage
        In list order (the descriptor's ``sources`` order).
    skipped : list of SkippedImage
        Listed images that could not be used, with the reason.
    ignored : list of SkippedImage
        Files found in folders or patterns but not taken as images (another
        extension, broken link, …); hidden files are not listed.
    elapsed_s : float
    interrupted : bool
        Ctrl-C ended a local build early: the descriptor holds the images
        measured until then (``used``); the rest were not read.
    """

    descriptor: GramDescriptor
    used: list[UsedImage]
    skipped: list[SkippedImage]
    ignored: list[SkippedImage]
    elapsed_s: float
    interrupted: bool = False

    @property
    def total(self) -> int:
        """Images listed: used plus skipped."""
        return len(self.used) + len(self.skipped)

    def skipped_summary(self, limit: int = 20) -> str | None:
        """``"skipped 3 of 500: a.jpg: reason; …"`` with one file per line, or ``None``.

        At most ``limit`` files are named; the rest are counted.
        """
        return _summary(f"skipped {len(self.skipped)} of {self.total} images", self.skipped, limit)

    def ignored_summary(self, limit: int = 10) -> str | None:
        """``"ignored 2 files that are not images: notes.txt: …"``, or ``None``."""
        return _summary(f"ignored {len(self.ignored)} file(s) that are not images", self.ignored, limit)


def _summary(head: str, items: Sequence[SkippedImage], limit: int) -> str | None:
    if not items:
        return None
    lines = [f"{head}:"] + [f"  {s.name}: {s.reason}" for s in items[:limit]]
    if len(items) > limit:
        lines.append(f"  … and {len(items) - limit} more")
    return "\n".join(lines)


# ---------------------------------------------------------------------- listing and weights


def find_images(
    paths: PathLike | Iterable[PathLike], *, recursive: bool = False
) -> tuple[list[Path], list[SkippedImage]]:
    """Expand files, folders and glob patterns (see :func:`multiscale.io.list_images`).

    Returns
    -------
    images : list of Path
    ignored : list of SkippedImage
        Files seen but not taken, hidden files and sub-folders left out.

    Raises
    ------
    ImageError
        An entry names nothing, or a folder or pattern holds no image.
    """
    images, seen = list_images(paths, recursive=recursive)
    ignored = [SkippedImage(os.fspath(p), reason) for p, reason in seen if reason in _NOTEWORTHY_IGNORED]
    return images, ignored


def read_image_weights(path: PathLike, images: Sequence[PathLike]) -> list[float]:
    """Per-image weights from a CSV file, one per entry of ``images``.

    Format: one ``PATH,WEIGHT`` per line, UTF-8. Blank lines and lines
    starting with ``#`` are ignored, as is a first line whose weight is not
    a number (a header such as ``path,weight``). A relative ``PATH`` is
    relative to the CSV file's folder. Weights are finite numbers > 0.
    Images the file does not list get weight 1.

    Parameters
    ----------
    path : str or PathLike
        The CSV file.
    images : sequence of paths
        The images being built (as listed by :func:`find_images`).

    Returns
    -------
    list of float
        ``weights[i]`` for ``images[i]``.

    Raises
    ------
    ConfigError
        Field ``weights_file``: the file cannot be read, a line is malformed,
        a weight is not > 0, a path is listed twice or names no image being
        built (all such paths are listed).
    """
    p = Path(path)

    def fail(message: str) -> ConfigError:
        return ConfigError("weights_file", f"{p}: {message}")

    try:
        size = p.stat().st_size
        if p.is_dir():
            raise fail("is a directory, expected a CSV file")
        if size > MAX_WEIGHTS_FILE_BYTES:
            raise fail(f"is {size} bytes; a weights file may have at most {MAX_WEIGHTS_FILE_BYTES}")
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise fail("no such file") from None
    except UnicodeDecodeError:
        raise fail("not UTF-8 text; expected lines of PATH,WEIGHT") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None

    index = {os.path.realpath(img): i for i, img in enumerate(images)}
    weights = [1.0] * len(images)
    seen: dict[str, int] = {}
    unknown: list[str] = []
    first = True
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise fail(f"not a valid CSV file ({exc})") from None
    for line, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        was_first, first = first, False
        if len(cells) != 2:
            raise fail(f"line {line}: expected PATH,WEIGHT, got {len(cells)} field(s)")
        name, value = cells
        try:
            weight = float(value)
        except ValueError:
            if was_first:
                continue  # a header line
            raise fail(f"line {line}: weight {value!r} is not a number") from None
        if not (math.isfinite(weight) and weight > 0):
            raise fail(f"line {line}: weight must be a finite number > 0, got {value}")
        target = Path(name) if os.path.isabs(name) else p.parent / name
        key = os.path.realpath(target)
        if key not in index:
            unknown.append(name)
            continue
        if key in seen:
            raise fail(f"line {line}: {name} is already given a weight on line {seen[key]}")
        seen[key] = line
        weights[index[key]] = weight
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise fail(
            f"lists {len(unknown)} path(s) that are not among the images being built: {shown} "
            f"(relative paths are taken from the CSV file's folder, {p.parent})"
        )
    logger.info("%s: weights for %d of %d images (the rest weigh 1)", p, len(seen), len(images))
    return weights


# ---------------------------------------------------------------------- measuring


@functools.lru_cache(maxsize=2)
def _network(weights_path: str | None, pooling: str, padding: str) -> tuple[Any, Any]:
    """The weights and VGG16 stack for a config, built once per process (and Dask worker)."""
    from ..measure.backbone import network_for

    return network_for(weights_path, pooling=pooling, padding=padding)


@dataclass(frozen=True)
class _Item:
    """One image to measure: its listed name, the path to open, its weight."""

    name: str
    path: str
    weight: float


def _measure_into(
    descriptor: GramDescriptor, item: _Item, *, network: Any, config: DescriptorConfig, max_pixels: int
) -> UsedImage:
    """Read, scale and measure one image and add it; raises a MultiscaleError or OSError."""
    from ..measure.gram import check_image_size, image_moments, image_sliced_features
    from ..measure.sliced import measure_bank

    image = scale_source(load_image(item.path, max_pixels=max_pixels), config=config)
    height, width = image.shape[:2]
    check_image_size(height, width, config=config, name=item.name)
    grams, means = image_moments(image, network=network, config=config)
    bank = (
        measure_bank(image_sliced_features(image, network=network, config=config))
        if descriptor.has_bank
        else None
    )
    mean_color = image.reshape(-1, 3).mean(axis=0, dtype=np.float64)
    del image
    digest = file_sha256(item.path)
    descriptor.add(
        grams, name=item.name, sha256=digest, weight=item.weight, mean_color=mean_color, bank=bank,
        means=means if descriptor.has_means else None,
    )  # fmt: skip
    return UsedImage(name=item.name, sha256=digest, weight=item.weight, height=height, width=width)


def _reason(exc: BaseException, item: _Item) -> str:
    """The error's message without a leading file name (the summary names the file)."""
    plain_os_error = isinstance(exc, OSError) and not isinstance(exc, MultiscaleError)
    text = exc.strerror if plain_os_error and exc.strerror else str(exc)
    for prefix in (item.path, item.name):
        if text.startswith(prefix + ": "):
            return text[len(prefix) + 2 :]
    return text


def _empty(config: DescriptorConfig, weights: Any, keep_all: bool) -> GramDescriptor:
    return GramDescriptor.empty(
        config=config,
        backbone=weights.backbone_id,
        weights_sha256=weights.sha256,
        channels={layer: layer_channels(layer) for layer in config.all_layers},
        keep_all=keep_all,
        bank="sliced" in config.statistics,
        means="mean" in config.statistics,
    )


def _build_items(
    items: Sequence[_Item],
    *,
    config: DescriptorConfig,
    keep_all: bool,
    max_pixels: int,
    on_image: Callable[[str, bool], None] | None = None,
    interrupted: list[bool] | None = None,
) -> tuple[GramDescriptor, list[UsedImage], list[SkippedImage]]:
    """Build a descriptor over ``items`` in this process, one image at a time.

    With ``interrupted`` (a one-element list), Ctrl-C ends the loop and sets
    it: the images measured so far stay in the descriptor (``add`` leaves it
    unchanged when it does not finish), so nothing done is lost.
    """
    weights, network = _network(config.weights, config.pooling, config.padding)
    descriptor = _empty(config, weights, keep_all)
    used: list[UsedImage] = []
    skipped: list[SkippedImage] = []
    try:
        _measure_items(
            items,
            descriptor,
            used,
            skipped,
            network=network,
            config=config,
            max_pixels=max_pixels,
            on_image=on_image,
        )
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        interrupted[0] = True
    return descriptor, used, skipped


def _measure_items(
    items: Sequence[_Item],
    descriptor: GramDescriptor,
    used: list[UsedImage],
    skipped: list[SkippedImage],
    *,
    network: Any,
    config: DescriptorConfig,
    max_pixels: int,
    on_image: Callable[[str, bool], None] | None,
) -> None:
    for item in items:
        try:
            used.append(
                _measure_into(descriptor, item, network=network, config=config, max_pixels=max_pixels)
            )
            ok = True
        except (MultiscaleError, OSError) as exc:
            if isinstance(exc, ResourceError):
                logger.warning("%s: skipped: %s", item.name, exc)
            skipped.append(SkippedImage(item.name, _reason(exc, item)))
            ok = False
        if on_image is not None:
            on_image(item.name, ok)


def _build_chunk(
    items: Sequence[_Item], *, config: DescriptorConfig, keep_all: bool, max_pixels: int
) -> tuple[GramDescriptor, list[UsedImage], list[SkippedImage]]:
    """A Dask task: the partial descriptor of one chunk (module level, so workers can import it)."""
    return _build_items(items, config=config, keep_all=keep_all, max_pixels=max_pixels)


# ---------------------------------------------------------------------- the build


def build_descriptor(
    paths: PathLike | Iterable[PathLike],
    *,
    config: DescriptorConfig,
    recursive: bool = False,
    weights_file: PathLike | None = None,
    keep_all: bool = False,
    callback: Callable[[BuildProgress], object] | None = None,
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
    dask: Any = None,
    workers: int | None = None,
    chunk_size: int | None = None,
) -> BuildResult:
    """Build a Gram descriptor over photos, one image in memory at a time.

    Each image is read (see :func:`multiscale.io.load_image`), scaled by
    ``config.source_scale`` / ``source_width``, checked against the octaves
    and layers, measured, and added with its weight, its SHA-256 and its
    mean colour. Unusable files are skipped and reported in the result.

    Parameters
    ----------
    paths : path or iterable of paths
        Files, folders and glob patterns (see :func:`multiscale.io.list_images`).
    config : DescriptorConfig
        What to measure: ``octaves``, ``layers``, ``pooling``, ``padding``,
        ``source_scale``, ``source_width`` and ``weights`` (the VGG16 file);
        with ``sliced`` among its ``statistics``, a quantile bank too; with
        ``mean``, the images' mean feature vectors.
    recursive : bool
        Search folders recursively; ``**`` in patterns spans folders.
    weights_file : path, optional
        CSV of per-image weights (see :func:`read_image_weights`); default all 1.
    keep_all : bool
        Keep every image's Grams, for the affine-invariant join. Costs
        :func:`multiscale.descriptors.descriptor.keep_all_nbytes` bytes, checked against
        the memory available before starting.
    callback : callable, optional
        Called with a :class:`BuildProgress` after each image (each chunk
        on Dask).
    max_input_pixels : int
        Images declaring more pixels are skipped before decoding.
    dask : str or distributed.Client, optional
        Run on this Dask distributed cluster: a scheduler address
        (``tcp://host:8786``) or a connected client. Needs the ``dask``
        extra (``pip install 'multiscale[dask]'``), and workers that can
        open the files by their absolute paths.
    workers : int, optional
        Start a local Dask cluster of this many worker processes for the
        build (not with ``dask``).
    chunk_size : int, optional
        Images per Dask task; default ``ceil(n / (4 · workers))``, at most
        64. Ignored for a local build.

    Returns
    -------
    BuildResult
        ``descriptor``, ``used`` and ``skipped`` images in list order,
        ``ignored`` files, ``elapsed_s``. A local and a Dask build of the
        same files give the same ``sources`` and sums equal to round-off.

    Raises
    ------
    ImageError
        Nothing to list (see :func:`find_images`), or no usable image; the
        message lists every file with its reason.
    ConfigError
        A bad option or weights file (names the field).
    WeightsError
        The VGG16 weights cannot be loaded.
    ResourceError
        ``keep_all`` would not fit in the memory available.
    ClusterError
        Dask is not installed, the scheduler cannot be reached, or a worker died.
    """
    started = time.perf_counter()
    if not isinstance(config, DescriptorConfig):
        raise ConfigError("config", f"must be a DescriptorConfig, got {type(config).__name__}")
    if dask is not None and workers is not None:
        raise ConfigError(
            "workers", "give either a Dask cluster to use or a number of workers to start, not both"
        )
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError("workers", f"must be an integer ≥ 1, got {workers!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ConfigError("chunk_size", f"must be an integer ≥ 1, got {chunk_size!r}")
    if isinstance(max_input_pixels, bool) or not isinstance(max_input_pixels, int) or max_input_pixels < 64:
        raise ConfigError("max_input_pixels", f"must be an integer ≥ 64, got {max_input_pixels!r}")

    images, ignored = find_images(paths, recursive=recursive)
    weights = [1.0] * len(images) if weights_file is None else read_image_weights(weights_file, images)
    if keep_all:
        _check_keep_all_fits(len(images), config)
    items = [
        _Item(name=os.fspath(img), path=os.path.abspath(img), weight=w)
        for img, w in zip(images, weights, strict=True)
    ]
    total = len(items)

    interrupted = [False]
    if dask is None and workers is None:
        counts = {"done": 0, "used": 0, "skipped": 0}

        def on_image(name: str, ok: bool) -> None:
            counts["done"] += 1
            counts["used" if ok else "skipped"] += 1
            if callback is not None:
                callback(
                    BuildProgress(
                        done=counts["done"], total=total, used=counts["used"], skipped=counts["skipped"],
                        name=name, elapsed_s=time.perf_counter() - started,
                    )
                )  # fmt: skip

        descriptor, used, skipped = _build_items(
            items, config=config, keep_all=keep_all, max_pixels=max_input_pixels, on_image=on_image,
            interrupted=interrupted,
        )  # fmt: skip
    else:
        descriptor, used, skipped = _build_on_dask(
            items,
            config=config,
            keep_all=keep_all,
            max_pixels=max_input_pixels,
            dask=dask,
            workers=workers,
            chunk_size=chunk_size,
            callback=callback,
            started=started,
        )

    result = BuildResult(
        descriptor=descriptor,
        used=used,
        skipped=skipped,
        ignored=ignored,
        elapsed_s=time.perf_counter() - started,
        interrupted=interrupted[0],
    )
    if interrupted[0] and not used:
        raise KeyboardInterrupt
    if not used:
        raise ImageError(f"{_entries_label(paths)}: no usable images; {result.skipped_summary()}")
    logger.info(
        "built a descriptor of %d image(s) (%d skipped) in %.1f s", len(used), len(skipped), result.elapsed_s
    )
    return result


def _entries_label(paths: PathLike | Iterable[PathLike]) -> str:
    """The paths a user gave, for a message (the first three)."""
    entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    names = [os.fspath(e) for e in entries]
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def _check_keep_all_fits(count: int, config: DescriptorConfig) -> None:
    needed = keep_all_nbytes(
        count=count,
        octaves=config.octaves,
        channels={layer: layer_channels(layer) for layer in config.all_layers},
    )
    available = available_memory_bytes()
    # The kept Grams, plus one key's stack while saving.
    if available is not None and needed > available:
        raise ResourceError(
            f"keeping every Gram of {count} images needs about {needed / 1024**3:.2f} GiB "
            f"(count × octaves × Σ channels² × 8 bytes) but only {available / 1024**3:.2f} GiB is "
            "available; build without --keep-grams (the mean and log-euclidean joins do not need them), "
            "with fewer --octaves or shallower --layers, or in parts and merge them on a bigger machine"
        )


# ---------------------------------------------------------------------- Dask


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            "building on a Dask cluster needs the optional dask dependency: "
            "pip install 'multiscale[dask]' (or pip install 'dask[distributed]')"
        ) from None
    return distributed


#: Seconds to wait for a Dask scheduler to answer.
CONNECT_TIMEOUT_S = 10


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """Keep Dask's own INFO/WARNING chatter (cluster start-up and shutdown) out of the output.

    Left alone when this module logs at DEBUG (``multiscale -vv``).
    """
    _import_distributed()  # its import sets its loggers' levels; change them after
    ours = logging.getLogger(__name__)
    theirs = logging.getLogger("distributed")
    if ours.isEnabledFor(logging.DEBUG):
        yield
        return
    saved = theirs.level
    theirs.setLevel(logging.ERROR)
    try:
        yield
    finally:
        theirs.setLevel(saved)


@contextlib.contextmanager
def _client(dask: Any, workers: int | None) -> Iterator[Any]:
    distributed = _import_distributed()
    if isinstance(dask, distributed.Client):
        yield dask
        return
    if dask is not None:
        if not isinstance(dask, str) or not dask.strip():
            raise ConfigError("dask", f"must be a scheduler address such as tcp://host:8786, got {dask!r}")
        try:
            client = distributed.Client(dask, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"cannot connect to the Dask scheduler at {dask}: {exc}") from None
        with client:
            yield client
        return
    # One TensorFlow thread pool per worker process, sized so that together
    # they use the machine's cores once rather than workers times over.
    threads = str(max(1, (os.cpu_count() or 1) // int(workers or 1)))
    env = {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": threads}
    try:
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=env,
            silence_logs=logging.ERROR,
        )
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot start a local Dask cluster of {workers} workers: {exc}") from None
    with cluster, distributed.Client(cluster) as client:
        yield client


def _chunks(items: Sequence[_Item], size: int) -> list[list[_Item]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _build_on_dask(
    items: Sequence[_Item],
    *,
    config: DescriptorConfig,
    keep_all: bool,
    max_pixels: int,
    dask: Any,
    workers: int | None,
    chunk_size: int | None,
    callback: Callable[[BuildProgress], object] | None,
    started: float,
) -> tuple[GramDescriptor, list[UsedImage], list[SkippedImage]]:
    """Partial descriptors over chunks on the cluster, merged exactly in list order."""
    with _quiet_distributed(), _client(dask, workers) as client:
        distributed = _import_distributed()
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or (workers or 1))
        size = chunk_size or max(
            1, min(MAX_AUTO_CHUNK, math.ceil(len(items) / (CHUNKS_PER_WORKER * n_workers)))
        )
        chunks = _chunks(items, size)
        logger.info(
            "building on Dask: %d image(s) in %d chunk(s) over %d worker(s)",
            len(items),
            len(chunks),
            n_workers,
        )
        futures = [
            client.submit(
                _build_chunk, chunk, config=config, keep_all=keep_all, max_pixels=max_pixels, pure=False
            )
            for chunk in chunks
        ]
        position = {f.key: i for i, f in enumerate(futures)}
        parts: list[Any] = [None] * len(chunks)
        done = used = skipped = 0
        try:
            for future in distributed.as_completed(futures):
                part = future.result()
                parts[position[future.key]] = part
                future.release()
                done += len(part[1]) + len(part[2])
                used += len(part[1])
                skipped += len(part[2])
                if callback is not None:
                    callback(
                        BuildProgress(
                            done=done, total=len(items), used=used, skipped=skipped, name=None,
                            elapsed_s=time.perf_counter() - started,
                        )
                    )  # fmt: skip
        except (distributed.KilledWorker, distributed.comm.CommClosedError, OSError) as exc:
            raise ClusterError(f"the Dask build failed: {type(exc).__name__}: {exc}") from None
        finally:
            for future in futures:
                future.cancel()
    descriptor = GramDescriptor.merge_all(part[0] for part in parts)
    return (
        descriptor,
        [u for part in parts for u in part[1]],
        [s for part in parts for s in part[2]],
    )
