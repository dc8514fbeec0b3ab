"""Reading and writing files: every check on untrusted input lives here.

Images enter the library through :func:`load_image` and leave it through
:func:`save_image`; in between they are float32 arrays of shape (H, W, 3),
RGB, with values in [0, 1]. Every conversion (bit depth, mode, alpha,
orientation) happens here, once.

All writes are atomic: data goes to a temporary file in the destination's
folder, is flushed to disk, and replaces the destination with
:func:`os.replace`. A crash or a full disk never leaves a half-written output
and never destroys an existing one.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import math
import os
import stat
import struct
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .config import DEFAULT_MAX_INPUT_PIXELS
from .errors import ConfigError, ImageError, OutputError, ResourceError

if TYPE_CHECKING:
    from .config import DescriptorConfig

PathLike = str | os.PathLike[str]

logger = logging.getLogger(__name__)

#: File extensions taken as images when a folder or a glob pattern is expanded.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif")

#: Output formats by extension, and the bit depths each can store.
SAVE_FORMATS: dict[str, tuple[int, ...]] = {
    ".png": (8, 16),
    ".jpg": (8,),
    ".jpeg": (8,),
    ".tif": (8, 16),
    ".tiff": (8, 16),
    ".webp": (8,),
}

_GLOB_CHARS = frozenset("*?[")
_HASH_CHUNK = 1 << 20
_IDAT_SIZE = 1 << 20


# --------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------


def check_writable(path: PathLike, *, overwrite: bool) -> Path:
    """Check that ``path`` may be written; return it as a :class:`Path`.

    Raises
    ------
    OutputError
        If ``path`` exists and ``overwrite`` is false, is a directory, or its
        folder does not exist.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p}: is a directory; give a file name")
    if p.exists() and not overwrite:
        raise OutputError(f"{p}: already exists; use --overwrite to replace it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{p}: folder {parent} does not exist")
    return p


def _umask() -> int:
    # Reading the umask through os.umask() briefly changes it for every
    # thread; Linux exposes it read-only in /proc, so prefer that.
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries to disk, which makes a rename inside it durable.

    Best effort: not possible on every platform (Windows cannot open a directory).
    """
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_beside(path: PathLike) -> Path:
    """Create an empty hidden temporary file beside ``path`` and return its path.

    Named ``.NAME.XXXXXXXX.tmp.EXT``: in the same folder (a rename into place
    is atomic), and keeping ``path``'s suffix so that writers choosing a
    format by extension still work. Whoever creates it removes it.

    Raises
    ------
    OutputError
        If the folder does not take a new file; the message names ``path``.
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=f".tmp{p.suffix}", dir=parent)
    except OSError as exc:
        raise OutputError(f"{p}: cannot write in {parent}: {exc.strerror or exc}") from exc
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_output(path: PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The temporary file keeps ``path``'s suffix so that writers choosing a
    format by extension still work. On any exception it is removed and
    ``path`` is left untouched. The finished file gets the permissions a
    newly created file would get (``0o666`` minus the umask), not the
    private ``0o600`` of temporary files. Without ``overwrite`` the final
    step is a hard link, which fails rather than replace a file that
    appeared while writing.

    Raises
    ------
    OutputError
        If ``path`` may not be written (see :func:`check_writable`) or any
        step of the write fails; the message names ``path``.
    """
    p = check_writable(path, overwrite=overwrite)
    parent = p.parent if str(p.parent) else Path(".")
    tmp = temp_beside(p)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):  # some file systems have no Unix modes
            os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, p)
        else:
            _link_no_clobber(tmp, p)
        fsync_dir(parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"{p}: cannot write: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_outputs(paths: Iterable[PathLike], *, overwrite: bool = False) -> Iterator[list[Path]]:
    """Yield one temporary path beside each of ``paths``; on success they replace ``paths`` together.

    For a set of files that belong together (animation frames and the
    animation, the images of a series and their JSONs): every file is written and flushed to disk before the first
    is renamed into place, so a failure, a full disk or an interrupt while
    writing leaves the previous set whole and no temporary file behind. Only
    a crash during the burst of renames at the end can leave old and new
    files mixed. Each temporary path keeps its target's suffix.

    Raises
    ------
    OutputError
        As :func:`atomic_output`, naming the path at fault.
    """
    targets = [check_writable(p, overwrite=overwrite) for p in paths]
    tmps: list[Path] = []
    try:
        for p in targets:
            tmps.append(temp_beside(p))
        yield tmps
        for tmp, p in zip(tmps, targets, strict=True):
            try:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise OutputError(f"{p}: cannot write: {exc.strerror or exc}") from exc
            with contextlib.suppress(OSError):
                os.chmod(tmp, 0o666 & ~_umask())
        for tmp, p in zip(tmps, targets, strict=True):
            try:
                if overwrite:
                    os.replace(tmp, p)
                else:
                    _link_no_clobber(tmp, p)
            except OutputError:
                raise
            except OSError as exc:
                raise OutputError(f"{p}: cannot write: {exc.strerror or exc}") from exc
        for parent in {p.parent if str(p.parent) else Path(".") for p in targets}:
            fsync_dir(parent)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


def _link_no_clobber(tmp: Path, dest: Path) -> None:
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise OutputError(f"{dest}: appeared while writing; use --overwrite to replace it") from None
    except OSError:
        # Some file systems (FAT, some network mounts) have no hard links.
        if dest.exists():
            raise OutputError(f"{dest}: appeared while writing; use --overwrite to replace it") from None
        os.replace(tmp, dest)
    else:
        tmp.unlink()


def write_bytes_atomic(path: PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json_atomic(path: PathLike, obj: Any, *, overwrite: bool = False) -> Path:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically.

    NaN and infinite floats become ``null``: strict JSON has no spelling for
    them, and a run that stopped on its first evaluation (best loss ``inf``)
    must not lose its metadata over it.
    """
    text = json.dumps(json_safe(obj), indent=2, default=_json_default, allow_nan=False)
    return write_bytes_atomic(path, (text + "\n").encode("utf-8"), overwrite=overwrite)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None``."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --------------------------------------------------------------------------
# Hashing and listing
# --------------------------------------------------------------------------


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file's bytes as 64 lowercase hex digits, read in 1 MiB chunks.

    Raises
    ------
    OSError
        If the file cannot be read; the message names it.
    """
    p = Path(path)
    digest = hashlib.sha256()
    try:
        with open(p, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise OSError(exc.errno, f"{p}: cannot read: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def _expand_folder(folder: Path, recursive: bool, skipped: list[tuple[Path, str]]) -> list[Path]:
    try:
        entries = sorted(folder.rglob("*") if recursive else folder.iterdir(), key=lambda q: q.as_posix())
    except OSError as exc:
        raise ImageError(f"{folder}: cannot list folder: {exc.strerror or exc}") from exc
    found: list[Path] = []
    for entry in entries:
        rel = entry.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            # Hidden files include our own half-written ".name.xxxx.tmp.png".
            if entry.is_file():
                skipped.append((entry, "hidden file"))
            continue
        if entry.is_dir():
            if not recursive:
                skipped.append((entry, "sub-folder (not searched without recursive)"))
        elif not entry.exists():
            skipped.append((entry, "broken link"))
        elif not entry.is_file():
            skipped.append((entry, "not a regular file"))
        elif not _is_image_name(entry):
            skipped.append((entry, "not an image file extension"))
        else:
            found.append(entry)
    return found


def list_images(
    paths: PathLike | Iterable[PathLike], *, recursive: bool = False
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files, folders and glob patterns into a list of image files.

    Parameters
    ----------
    paths : path or iterable of paths
        Each entry is a file (taken as is, whatever its extension: naming it
        is explicit), a folder (its files whose extension is one of
        :data:`IMAGE_EXTENSIONS`, case-insensitive, sorted by path; hidden
        files are skipped) or a glob pattern containing ``*``, ``?`` or ``[``
        (its matches, sorted; matched folders are expanded like named ones,
        matched files are kept only with an image extension).
    recursive : bool
        Search folders recursively, and let ``**`` in patterns span folders.

    Returns
    -------
    images : list of Path
        The image files, in the order of ``paths`` (each entry's expansion
        sorted), without duplicates (the first occurrence is kept).
    skipped : list of (Path, str)
        Files seen but not taken, each with the reason.

    Raises
    ------
    ImageError
        If an entry names nothing that exists, matches no file, or is a folder
        (or pattern) containing no image file. The message names the entry.
    """
    entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not entries:
        raise ImageError("no image paths given")
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for entry in entries:
        text = os.fspath(entry)
        p = Path(text)
        found: list[Path] = []
        if p.is_dir():
            found = _expand_folder(p, recursive, skipped)
            if not found:
                raise ImageError(
                    f"{p}: folder contains no image files "
                    f"({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})"
                    + ("" if recursive else "; use recursive to search sub-folders")
                )
        elif p.is_file():
            found = [p]
        elif os.path.lexists(text) and not p.exists():
            raise ImageError(f"{p}: broken symbolic link")
        elif p.exists():
            raise ImageError(f"{p}: not a regular file or folder")
        elif _GLOB_CHARS.intersection(text):
            matches = sorted(glob.glob(text, recursive=recursive))
            if not matches:
                raise ImageError(f"{text}: no files match this pattern")
            for m in map(Path, matches):
                if m.is_dir():
                    found += _expand_folder(m, recursive, skipped)
                elif m.is_file() and _is_image_name(m):
                    found.append(m)
                else:
                    skipped.append(
                        (m, "not an image file extension" if m.is_file() else "not a regular file")
                    )
            if not found:
                raise ImageError(f"{text}: pattern matches no image files")
        else:
            raise ImageError(f"{p}: no such file or folder")
        for f in found:
            key = Path(os.path.realpath(f))
            if key not in seen:
                seen.add(key)
                images.append(f)
    return images, skipped


# --------------------------------------------------------------------------
# Reading images
# --------------------------------------------------------------------------

# Pillow's own decompression-bomb limit is a module global. When ours is the
# looser one, the header is read with Pillow's lifted for that one call; the
# lock keeps concurrent load_image calls from restoring each other's values.
_PILLOW_LIMIT_LOCK = threading.Lock()

# 16-bit colour samples Pillow would cut to 8 bits; decoding once with the
# native rawmode gives the high bytes, once with the opposite byte order the
# low bytes (see _decode_wide).
_NATIVE = "L" if sys.byteorder == "little" else "B"
_WIDE_RAWMODES = {
    f"{base};16{order}": f"{base};16{other}"
    for base in ("RGB", "RGBA")
    for order, other in (("B", "L"), ("L", "B"), ("N", "B" if _NATIVE == "L" else "L"))
}

# EXIF orientation → operation on an (H, W, C) array (Pillow's exif_transpose).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
#: The orientations that swap width and height.
_TRANSPOSING = frozenset({5, 6, 7, 8})


def _check_max_pixels(max_pixels: Any) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ConfigError("max_input_pixels", f"must be an integer ≥ 1, got {max_pixels!r}")


def _check_background(background: Any) -> np.ndarray:
    try:
        bg = np.asarray(background, dtype=np.float64)
    except (TypeError, ValueError):
        bg = np.full(0, np.nan)
    if bg.shape != (3,) or not np.all(np.isfinite(bg)) or bg.min() < 0 or bg.max() > 1:
        raise ConfigError("background", f"must be three numbers in [0, 1] (RGB), got {background!r}")
    return bg.astype(np.float32)


def _check_readable_file(p: Path) -> None:
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{p}: cannot access: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{p}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or a device such as /dev/zero could feed bytes forever.
        raise ImageError(f"{p}: not a regular file")
    if st.st_size == 0:
        raise ImageError(f"{p}: empty file (0 bytes), not an image")


def _bomb_message(p: Path, width: int, height: int, max_pixels: int) -> str:
    return (
        f"{p}: image is {width}×{height} = {width * height:,} pixels, more than the limit of "
        f"{max_pixels:,} (possible decompression bomb); raise the limit with the "
        f"max_input_pixels option (--max-input-pixels) if the file is trusted"
    )


def _open_header(fh: BinaryIO, p: Path, max_pixels: int) -> Image.Image:
    """Identify the image and check its size; decode no pixel."""
    with warnings.catch_warnings():
        # Pillow warns above its own limit; ours is the one that applies.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(fh)
        except Image.DecompressionBombError:
            with _PILLOW_LIMIT_LOCK:
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    im = Image.open(fh)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
    width, height = im.size
    if width < 1 or height < 1:
        raise ImageError(f"{p}: image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ImageError(_bomb_message(p, width, height, max_pixels))
    return im


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception as exc:
        # Broken metadata must not make the pixels unreadable.
        logger.warning("ignoring unreadable EXIF data: %s", exc)
        return 1
    return value if isinstance(value, int) and value in _ORIENT else 1


def _wide_tiles(im: Image.Image) -> list[Any] | None:
    """Tiles that decode the low bytes of a 16-bit RGB(A) image, or None."""
    tiles = []
    for tile in im.tile:
        args = tile.args
        rawmode = args if isinstance(args, str) else (args[0] if args else None)
        if rawmode not in _WIDE_RAWMODES:
            return None
        other = _WIDE_RAWMODES[rawmode]
        tiles.append(tile._replace(args=other if isinstance(args, str) else (other, *args[1:])))
    return tiles or None


def _is_png_la16(im: Image.Image) -> bool:
    # Pillow reads 16-bit grey+alpha PNG as 8-bit RGBA ("LA;16B"); the same
    # 4 bytes per pixel decoded as "RGBA" give L and A with both bytes each.
    return im.format == "PNG" and [t.args for t in im.tile] == ["LA;16B"]


def _decode(fh: BinaryIO, p: Path, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Decode the first frame to (values (H, W, C) float32 in [0, 1], alpha or None, orientation)."""
    im = _open_header(fh, p, max_pixels)
    if getattr(im, "is_animated", False):
        warnings.warn(f"{p}: animated or multi-frame image; only the first frame is used", stacklevel=3)
        im.seek(0)
    # Tiles are read before anything loads the pixels (for PNG, getexif()
    # does, to find an eXIf chunk after the image data).
    low_tiles = _wide_tiles(im) if im.mode in ("RGB", "RGBA") else None
    la16 = _is_png_la16(im)
    if la16:
        im.tile = [t._replace(args="RGBA") for t in im.tile]
    im.load()
    orientation = _orientation(im)

    if la16:
        raw = np.asarray(im).astype(np.uint16)
        lum = (raw[..., 0] << 8) | raw[..., 1]
        alpha16 = (raw[..., 2] << 8) | raw[..., 3]
        return _unit(lum[..., None], 65535), _unit(alpha16, 65535), orientation
    if low_tiles is not None:
        wide = _decode_wide(fh, p, max_pixels, im, low_tiles)
        if wide is not None:
            if wide.shape[-1] == 4:
                return _unit(wide[..., :3], 65535), _unit(wide[..., 3], 65535), orientation
            return _unit(wide, 65535), _key_alpha(wide, im.info.get("transparency")), orientation
    return (*_pixels(im, p), orientation)


def _decode_wide(
    fh: BinaryIO, p: Path, max_pixels: int, high: Image.Image, low_tiles: list[Any]
) -> np.ndarray | None:
    try:
        low = _open_header(fh, p, max_pixels)
        if getattr(low, "is_animated", False):
            low.seek(0)
        low.tile = low_tiles
        low.load()
        lo = np.asarray(low)
    except (OSError, ValueError, SyntaxError, KeyError) as exc:
        # The 8-bit decode worked; keep it rather than refuse the image.
        logger.warning("%s: read with 8-bit precision (16-bit decode failed: %s)", p, exc)
        return None
    hi = np.asarray(high)
    if lo.shape != hi.shape:
        return None
    return (hi.astype(np.uint16) << 8) | lo


def _unit(values: np.ndarray, scale: float) -> np.ndarray:
    return (values.astype(np.float32) / np.float32(scale)).astype(np.float32)


def _key_alpha(values: np.ndarray, transparency: Any) -> np.ndarray | None:
    """Alpha from a single transparent value (PNG tRNS for grey or RGB images)."""
    if transparency is None or isinstance(transparency, bytes):
        return None
    key = np.atleast_1d(np.asarray(transparency))
    if values.ndim == 2:
        values = values[..., None]
    if key.size != values.shape[-1]:
        return None
    return np.where(np.all(values == key, axis=-1), 0.0, 1.0).astype(np.float32)


def _int_scale(values: np.ndarray, p: Path) -> np.ndarray:
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi <= 255:
        return _unit(values, 255)
    if lo >= 0 and hi <= 65535:
        return _unit(values, 65535)
    logger.info("%s: 32-bit integer values in [%d, %d] min-max normalised", p, lo, hi)
    return ((values.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)


def _float_scale(values: np.ndarray, p: Path) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise ImageError(f"{p}: floating-point image has {bad} NaN or infinite pixel value(s)")
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0.0 and hi <= 1.0:
        return values.astype(np.float32)
    if hi == lo:
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    logger.info("%s: floating-point values in [%g, %g] min-max normalised", p, lo, hi)
    return ((values.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)


def _pixels(im: Image.Image, p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A loaded Pillow image as (values (H, W, 1 or 3) float32 in [0, 1], alpha (H, W) or None)."""
    mode = im.mode
    transparency = im.info.get("transparency")
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or transparency is not None else "RGB")
        mode, transparency = im.mode, None
    elif mode == "1":
        im, mode = im.convert("L"), "L"
    elif mode in ("La", "RGBa", "RGBX"):
        im = im.convert("RGBA" if mode != "RGBX" else "RGB")
        mode = im.mode
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        # No colour management: ICC profiles are ignored (see load_image).
        im, mode, transparency = im.convert("RGB"), "RGB", None

    arr = np.asarray(im)
    if mode in ("L", "RGB"):
        values = arr if arr.ndim == 3 else arr[..., None]
        return _unit(values, 255), _key_alpha(arr, transparency)
    if mode in ("LA", "RGBA"):
        return _unit(arr[..., :-1], 255), _unit(arr[..., -1], 255)
    if mode.startswith("I;16"):
        return _unit(arr[..., None], 65535), _key_alpha(arr, transparency)
    if mode == "I":
        return _int_scale(arr, p)[..., None], _key_alpha(arr, transparency)
    if mode == "F":
        return _float_scale(arr, p)[..., None], None
    raise ImageError(f"{p}: unsupported image mode {mode!r}")


@contextlib.contextmanager
def _reading(p: Path) -> Iterator[BinaryIO]:
    """Open image file ``p``; any failure, there or in the block, becomes an error naming it.

    Raises :class:`ImageError` for what the file is or holds (missing,
    unreadable, not an image, corrupt, too many pixels) and
    :class:`ResourceError` if memory runs out while decoding.
    """
    _check_readable_file(p)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed below; open() is patched in tests
    except PermissionError:
        raise ImageError(f"{p}: permission denied (cannot read the file)") from None
    except OSError as exc:
        raise ImageError(f"{p}: cannot open: {exc.strerror or exc}") from exc
    with fh:
        try:
            yield fh
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(
                f"{p}: not a recognised image file (Pillow cannot identify it); "
                f"use PNG, JPEG, TIFF, WebP, BMP or GIF"
            ) from None
        except MemoryError:
            raise ResourceError(f"{p}: not enough memory to decode this image") from None
        except Image.DecompressionBombError as exc:
            raise ImageError(
                f"{p}: refused as a possible decompression bomb ({exc}); the limit is the "
                f"max_input_pixels option (--max-input-pixels)"
            ) from None
        except (
            OSError,
            ValueError,
            SyntaxError,
            EOFError,
            IndexError,
            KeyError,
            struct.error,
            zlib.error,
        ) as exc:
            raise ImageError(
                f"{p}: cannot decode image ({exc}); the file is truncated, corrupt or unsupported"
            ) from exc


def image_size(path: PathLike, *, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> tuple[int, int]:
    """(width, height) of the image :func:`load_image` would return, from the file's header.

    The size is the displayed one: EXIF orientation is applied, so width and
    height may swap. Only the header is read, except for PNG, whose EXIF
    chunk may follow the pixel data (the file is then decoded to find it).

    Raises
    ------
    ImageError, ResourceError, ConfigError
        As :func:`load_image` does, for the same files.
    """
    p = Path(path)
    _check_max_pixels(max_pixels)
    with _reading(p) as fh:
        im = _open_header(fh, p, max_pixels)
        width, height = im.size
        if _orientation(im) in _TRANSPOSING:
            width, height = height, width
    return width, height


def load_image(
    path: PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Read an image file as RGB floats in [0, 1].

    Parameters
    ----------
    path : str or path-like
        Any format Pillow reads (PNG, JPEG, TIFF, WebP, BMP, GIF, …).
    max_pixels : int
        Images whose header claims more than ``width * height`` pixels are
        refused before any pixel is decoded (decompression-bomb guard). This
        is the ``max_input_pixels`` option (``--max-input-pixels``).
    background : tuple of 3 floats in [0, 1]
        RGB colour that transparent pixels are composited over.

    Returns
    -------
    numpy.ndarray
        float32, shape (H, W, 3), C-contiguous, values in [0, 1]. H and W
        are the displayed size (after EXIF rotation).

    Raises
    ------
    ImageError
        The message starts with the path and says what is wrong: no such
        file, a directory, not a regular file, no permission, empty, not a
        recognised image, truncated or corrupt data, too many pixels, or a
        floating-point image with NaN/Inf values.
    ConfigError
        If ``max_pixels`` or ``background`` is invalid.
    ResourceError
        If memory runs out while decoding.

    Notes
    -----
    How pixel values become [0, 1]:

    * 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, …): divided by 255.
      Grey is repeated into R, G and B. CMYK and other colour spaces use
      Pillow's plain conversion to RGB; embedded ICC profiles are ignored and
      values are taken as sRGB.
    * 16-bit (``I;16`` grey, 16-bit RGB/RGBA/grey+alpha PNG and RGB/RGBA
      TIFF): divided by 65535, never clipped, full precision kept.
    * ``I`` (32-bit integer): divided by 255 if all values lie in [0, 255],
      by 65535 if in [0, 65535], else min-max normalised to [0, 1].
    * ``F`` (32-bit float): every value must be finite; taken as is if all
      lie in [0, 1], else min-max normalised (a constant image is clipped).
    * Alpha (``LA``, ``PA``, ``RGBA``, palette or single-colour
      transparency): ``rgb * alpha + background * (1 - alpha)``.

    EXIF orientation is applied, so width and height may swap. Animated or
    multi-page files give their first frame, with a :class:`UserWarning`
    naming the file. Truncated files are errors: Pillow's global
    ``LOAD_TRUNCATED_IMAGES`` is never set here.
    """
    p = Path(path)
    _check_max_pixels(max_pixels)
    bg = _check_background(background)
    with _reading(p) as fh:
        values, alpha, orientation = _decode(fh, p, max_pixels)
    if alpha is not None:
        a = alpha[..., None]
        values = values * a + bg * (np.float32(1) - a)
    if values.shape[-1] == 1:
        values = np.repeat(values, 3, axis=-1)
    if orientation != 1:
        values = _ORIENT[orientation](values)
    return np.ascontiguousarray(np.clip(values, 0.0, 1.0), dtype=np.float32)


# --------------------------------------------------------------------------
# Writing images
# --------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _write_png16(fh: BinaryIO, q: np.ndarray) -> None:
    """Minimal PNG encoder: RGB, 16 bits per sample, filter 0, no metadata."""
    height, width, _ = q.shape
    fh.write(b"\x89PNG\r\n\x1a\n")
    fh.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)))
    compressor = zlib.compressobj(6)
    rows_per_block = max(1, (4 << 20) // (1 + 6 * width))
    pending = b""
    for y0 in range(0, height, rows_per_block):
        block = q[y0 : y0 + rows_per_block]
        rows = np.zeros((block.shape[0], 1 + 6 * width), dtype=np.uint8)  # byte 0: filter "None"
        rows[:, 1:] = block.astype(">u2").reshape(block.shape[0], -1).view(np.uint8)
        pending += compressor.compress(rows.tobytes())
        # Chunk boundaries depend only on the compressed stream: deterministic.
        while len(pending) >= _IDAT_SIZE:
            fh.write(_png_chunk(b"IDAT", pending[:_IDAT_SIZE]))
            pending = pending[_IDAT_SIZE:]
    pending += compressor.flush()
    for i in range(0, len(pending), _IDAT_SIZE):
        fh.write(_png_chunk(b"IDAT", pending[i : i + _IDAT_SIZE]))
    fh.write(_png_chunk(b"IEND", b""))


def _write_tiff(fh: BinaryIO, q: np.ndarray) -> None:
    """Minimal baseline TIFF: RGB, one uncompressed strip, little-endian, 8 or 16 bits."""
    height, width, _ = q.shape
    bits = q.dtype.itemsize * 8
    data = q.astype("<u2" if bits == 16 else np.uint8).tobytes()
    # Layout: header (8) | IFD (2 + 13 * 12 + 4) | BitsPerSample (6) | 2 rationals (16) | pixels
    tags_count = 13
    ifd_offset = 8
    extra = ifd_offset + 2 + tags_count * 12 + 4
    bps_offset = extra
    xres_offset = bps_offset + 6
    yres_offset = xres_offset + 8
    data_offset = yres_offset + 8
    short, long_, rational = 3, 4, 5
    entries = [
        (256, long_, 1, width),  # ImageWidth
        (257, long_, 1, height),  # ImageLength
        (258, short, 3, bps_offset),  # BitsPerSample
        (259, short, 1, 1),  # Compression: none
        (262, short, 1, 2),  # PhotometricInterpretation: RGB
        (273, long_, 1, data_offset),  # StripOffsets
        (277, short, 1, 3),  # SamplesPerPixel
        (278, long_, 1, height),  # RowsPerStrip
        (279, long_, 1, len(data)),  # StripByteCounts
        (282, rational, 1, xres_offset),  # XResolution
        (283, rational, 1, yres_offset),  # YResolution
        (284, short, 1, 1),  # PlanarConfiguration: chunky
        (296, short, 1, 2),  # ResolutionUnit: inch
    ]
    out = [b"II*\x00", struct.pack("<I", ifd_offset), struct.pack("<H", tags_count)]
    for tag, kind, count, value in entries:
        # A single SHORT sits left-justified in the 4-byte value field.
        packed = struct.pack("<HH", value, 0) if kind == short and count == 1 else struct.pack("<I", value)
        out.append(struct.pack("<HHI", tag, kind, count) + packed)
    out.append(struct.pack("<I", 0))  # no further IFD
    out.append(struct.pack("<HHH", bits, bits, bits))
    out.append(struct.pack("<II", 72, 1) * 2)
    fh.write(b"".join(out))
    fh.write(data)


def _write_pillow(fh: BinaryIO, q: np.ndarray, fmt: str, quality: int) -> None:
    im = Image.fromarray(q)
    if fmt == "PNG":
        im.save(fh, format="PNG", compress_level=6)
    elif fmt == "JPEG":
        # 4:4:4: textures carry fine colour detail that chroma subsampling blurs.
        # No optimize=True: Pillow then encodes into one buffer of a guessed
        # size, which noisy images at high quality overflow.
        im.save(fh, format="JPEG", quality=quality, subsampling=0)
    else:
        im.save(fh, format="WEBP", quality=quality, lossless=quality >= 100, method=4)


def check_output_format(path: PathLike, *, bit_depth: int = 8) -> None:
    """Raise :class:`OutputError` if ``path``'s extension cannot hold ``bit_depth``.

    Lets a command refuse an output before a long run rather than after it.
    """
    _check_save_args(Path(path), bit_depth, 95)


def _check_save_args(p: Path, bit_depth: Any, quality: Any) -> str:
    ext = p.suffix.lower()
    if ext not in SAVE_FORMATS:
        raise OutputError(
            f"{p}: unsupported output extension {p.suffix or '(none)'!r}; use one of "
            + ", ".join(SAVE_FORMATS)
        )
    if bit_depth not in (8, 16) or isinstance(bit_depth, bool):
        raise ConfigError("bit_depth", f"must be 8 or 16, got {bit_depth!r}")
    if bit_depth not in SAVE_FORMATS[ext]:
        raise OutputError(
            f"{p}: {ext[1:].upper()} stores 8 bits per channel only; "
            f"use a .png or .tif output for --bit-depth 16, or --bit-depth 8"
        )
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ConfigError("quality", f"must be an integer from 1 to 100, got {quality!r}")
    return ext


def _check_image_array(p: Path, image: Any, ext: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{p}: image must have shape (H, W, 3), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{p}: image must be floating point in [0, 1], got {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{p}: image contains NaN or infinite values")
    height, width = arr.shape[:2]
    limit = {".jpg": 65535, ".jpeg": 65535, ".webp": 16383}.get(ext)
    if limit is not None and max(height, width) > limit:
        raise OutputError(
            f"{p}: {width}×{height} is too large for {ext[1:].upper()} (at most {limit} px a side)"
        )
    if ext in (".tif", ".tiff") and arr.size * 2 > 0xFFFFFF00:
        raise OutputError(f"{p}: {width}×{height} is too large for a baseline TIFF (4 GiB); use .png")
    return arr


def save_image(
    path: PathLike,
    image: np.ndarray,
    *,
    bit_depth: int = 8,
    overwrite: bool = False,
    quality: int = 95,
) -> Path:
    """Write an RGB float image atomically; the format follows the extension.

    Parameters
    ----------
    path : str or path-like
        ``.png`` (8 or 16 bit), ``.jpg``/``.jpeg`` (8 bit), ``.tif``/``.tiff``
        (8 or 16 bit, uncompressed), ``.webp`` (8 bit).
    image : numpy.ndarray
        Floating point, shape (H, W, 3) or (1, H, W, 3), RGB, nominally in
        [0, 1]; values outside are clipped, then rounded to the nearest of
        the 2**bit_depth - 1 levels.
    bit_depth : {8, 16}
        Bits per channel.
    overwrite : bool
        Replace an existing file. Without it an existing file is an error.
    quality : int
        1–100, for JPEG and WebP (WebP at 100 is lossless). JPEG is written
        with 4:4:4 chroma.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        Unknown extension, 16 bits asked of an 8-bit format, an image too
        large for the format, an existing file without ``overwrite``, a
        missing or unwritable folder, or a failed write (the old file, if
        any, is then untouched).
    ConfigError
        Invalid ``bit_depth`` or ``quality``.
    ValueError
        If ``image`` is not (H, W, 3) floating point or holds NaN/Inf.

    Notes
    -----
    No metadata with times or versions is written, so the same array gives
    the same bytes. Pillow cannot write 16-bit RGB, so 16-bit PNG and all
    TIFF files come from the minimal encoders in this module.
    """
    p = Path(path)
    ext = _check_save_args(p, bit_depth, quality)
    arr = _check_image_array(p, image, ext)
    top = 65535 if bit_depth == 16 else 255
    q = np.rint(np.clip(arr.astype(np.float32), 0.0, 1.0) * np.float32(top))
    q = q.astype(np.uint16 if bit_depth == 16 else np.uint8)
    with atomic_output(p, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        if ext in (".tif", ".tiff"):
            _write_tiff(fh, q)
        elif ext == ".png" and bit_depth == 16:
            _write_png16(fh, q)
        else:
            _write_pillow(fh, q, {".png": "PNG", ".webp": "WEBP"}.get(ext, "JPEG"), quality)
    return p


# --------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------


def resize_image(image: np.ndarray, *, width: int, height: int) -> np.ndarray:
    """Resample an image to ``width`` × ``height`` with a Lanczos filter.

    Each channel is resampled in float32 by Pillow (mode ``F``), whose
    Lanczos kernel widens with the reduction factor, so downscaling is
    antialiased. Lanczos overshoots at edges; the result is clipped.

    Parameters
    ----------
    image : numpy.ndarray
        float, shape (H, W, 3), values in [0, 1].
    width, height : int
        Output size in pixels, each ≥ 1.

    Returns
    -------
    numpy.ndarray
        float32, shape (height, width, 3), C-contiguous, values in [0, 1].
        Same size as the input: a float32 copy.
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ValueError(f"image must have shape (H, W, 3), got {arr.shape}")
    if arr.shape[:2] == (height, width):
        return np.array(arr, dtype=np.float32, order="C")
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(arr[..., c])).resize(
                (int(width), int(height)), Image.Resampling.LANCZOS
            )
        )
        for c in range(3)
    ]
    return np.ascontiguousarray(np.clip(np.stack(channels, axis=-1), 0.0, 1.0), dtype=np.float32)


def scaled_size(width: int, height: int, *, config: DescriptorConfig) -> tuple[int, int]:
    """(width, height) of a ``width`` × ``height`` source once :func:`scale_source` has resized it.

    ``source_width`` (if set) fixes the width and scales the height with it;
    otherwise both sides are multiplied by ``source_scale``; each side is
    rounded and at least 1 px.
    """
    scale = config.source_width / width if config.source_width is not None else config.source_scale
    if scale == 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def scale_source(image: np.ndarray, *, config: DescriptorConfig) -> np.ndarray:
    """Resize a source (float32 (H, W, 3) in [0, 1]) by ``source_width`` (if set) or ``source_scale``.

    The size is :func:`scaled_size`'s; an unchanged size returns ``image`` itself.
    """
    h, w = image.shape[:2]
    new_w, new_h = scaled_size(w, h, config=config)
    if (new_w, new_h) == (w, h):
        return image
    return resize_image(image, width=new_w, height=new_h)
