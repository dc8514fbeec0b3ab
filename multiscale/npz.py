"""Checked ``.npz`` files: one writer and one reader for descriptors, optimiser states and checkpoints.

An ``.npz`` file is a zip archive of ``.npy`` members. :func:`numpy.load`
trusts it: a 262-byte file can declare a 3.6 TiB array, a directory can list
millions of members, a deflated member can expand a thousandfold, and an
object member unpickles arbitrary code. The reader here trusts nothing:

1. before :mod:`zipfile` parses the archive, its central directory is
   measured (member count and bytes, ``max_members`` and
   ``max_directory_bytes``);
2. every listed member must be stored or deflated (as allowed), not
   encrypted, listed once, with sizes that fit the file (a deflated member
   may not claim more than deflate's 1032:1 can give);
3. every wanted member's ``.npy`` header (at most ``max_header_size``
   bytes) must give a dtype and a shape allowed by its :class:`Member`, and a
   data size equal to what the archive records; nothing is unpickled;
4. the data the headers declare together must fit ``max_bytes``;
5. only then is each member read, in chunks of :data:`READ_CHUNK` bytes,
   straight into an array of its own (or one the caller hands in), so an
   array of several GB is held once; reading to the member's end makes
   :mod:`zipfile` check its CRC.

Every failure is the caller's error class (:class:`~multiscale.errors.DescriptorError`,
:class:`~multiscale.errors.CheckpointError`, …) with a message that starts
with the file's path and says what is wrong.

The writer streams members one by one into a temporary file beside the
target and renames it into place (:func:`multiscale.io.atomic_output`), with
a fixed timestamp and mode on every member, so that the same arrays always
give the same bytes. Its files are what :func:`numpy.savez` writes, bar
timestamps and modes: :func:`numpy.load` reads them.
"""

from __future__ import annotations

import contextlib
import math
import struct
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import ArrayLike, DTypeLike

from .errors import MultiscaleError
from .io import PathLike, atomic_output

__all__ = [
    "DEFAULT_MAX_DIRECTORY_BYTES",
    "DEFAULT_MAX_MEMBERS",
    "MAX_DEFLATE_RATIO",
    "READ_CHUNK",
    "Header",
    "Member",
    "NpzReader",
    "read_npz",
    "write_npz",
]

#: Default most members, and bytes of central directory, an archive may list.
#: :mod:`zipfile` builds one Python object per listed member, so a small file
#: listing millions of them would cost far more memory than its size.
DEFAULT_MAX_MEMBERS = 4096
DEFAULT_MAX_DIRECTORY_BYTES = 4 * 1024**2

#: Most bytes deflate can give per compressed byte (258-byte matches coded in
#: 2 bits); a member claiming more is corrupted or lying.
MAX_DEFLATE_RATIO = 1032

#: Bytes read at a time into a member's array.
READ_CHUNK = 1 << 24

#: Most bytes of an ``.npy`` header (numpy's own default limit).
MAX_HEADER_SIZE = 10000

#: Timestamp of every member written (zip cannot store an earlier one).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

_EOCD_SIZE = 22
#: Slack of the deflate ratio check, for tiny members (a header and a few values).
_DEFLATE_SLACK = 1024
_COMPRESSIONS = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED}
_BAD_ARCHIVE = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    struct.error,
    NotImplementedError,
    OverflowError,
    ValueError,
    KeyError,
    OSError,
)


@dataclass(frozen=True)
class Member:
    """What one member of an archive must be.

    Parameters
    ----------
    shape : tuple of (int or None)
        The shape; ``None`` allows any extent on that axis (``(None,)``: any
        1-d array; ``()``: a scalar).
    dtypes : tuple of dtype-like
        The dtypes allowed, in either byte order (an array of the other byte
        order or in Fortran order is read and converted to native C order).
    finite : bool
        Refuse NaN and infinite values (for float dtypes).
    """

    shape: tuple[int | None, ...]
    dtypes: tuple[DTypeLike, ...] = (np.float64,)
    finite: bool = False

    def allows(self, dtype: np.dtype) -> bool:
        """Whether ``dtype`` (from a header) is one of :attr:`dtypes`, in any byte order."""
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            return False
        native = dtype.newbyteorder("=")
        return any(native == np.dtype(d).newbyteorder("=") for d in self.dtypes)

    def fits(self, shape: tuple[int, ...]) -> bool:
        """Whether ``shape`` (from a header) matches :attr:`shape`."""
        return len(shape) == len(self.shape) and all(
            want is None or got == want for got, want in zip(shape, self.shape, strict=True)
        )

    def describe(self) -> str:
        """The allowed dtypes, for messages: ``"float32 or float64"``."""
        return " or ".join(str(np.dtype(d)) for d in self.dtypes)


@dataclass(frozen=True)
class Header:
    """A member's ``.npy`` header, checked against its archive entry.

    Attributes
    ----------
    name : str
        Member name without ``.npy``.
    shape : tuple of int
    dtype : numpy.dtype
        As stored (any byte order).
    fortran : bool
        Stored in Fortran order.
    offset : int
        Bytes of the ``.npy`` header, where the data begin.
    nbytes : int
        Bytes of data.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int
    nbytes: int


#: Where a member's data go: called with the member's name, its shape and its
#: native dtype once every header has been checked; returns a C-contiguous,
#: writable array of that shape and dtype to fill, or ``None`` for a new one.
Into = Callable[[str, tuple[int, ...], np.dtype], "np.ndarray | None"]


class NpzReader:
    """An ``.npz`` archive opened for checked reading (see the module docstring).

    Use as a context manager. Opening checks the file and its central
    directory; :meth:`check_names`, :meth:`headers` and :meth:`read` check
    members against a schema.

    Parameters
    ----------
    path : str or PathLike
    error : type of MultiscaleError
        Raised for every problem, with the message ``"{path}: {problem}"``;
        its constructor takes the message alone.
    what : str
        What the file should be, with its article, for messages
        (``"a descriptor file"``).
    compression : collection of {"stored", "deflated"}
        The member compressions accepted.
    max_members, max_directory_bytes : int
        Most members and central-directory bytes the archive may list.
    max_header_size : int
        Most bytes of a member's ``.npy`` header.

    Raises
    ------
    error
        Missing, unreadable, empty or oversized file; not a zip archive;
        members listed twice, encrypted, compressed otherwise than allowed,
        or needing more bytes than the file has.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        error: type[MultiscaleError],
        what: str,
        compression: Collection[str] = ("stored", "deflated"),
        max_members: int = DEFAULT_MAX_MEMBERS,
        max_directory_bytes: int = DEFAULT_MAX_DIRECTORY_BYTES,
        max_header_size: int = MAX_HEADER_SIZE,
    ) -> None:
        unknown = set(compression) - set(_COMPRESSIONS)
        if unknown:
            raise ValueError(f"unknown compression(s) {sorted(unknown)}; known: {sorted(_COMPRESSIONS)}")
        self.path = Path(path)
        self.error = error
        self.what = what
        self._compressions = {_COMPRESSIONS[c] for c in compression}
        self._max_members = max_members
        self._max_directory_bytes = max_directory_bytes
        self._max_header_size = max_header_size
        self._fh: IO[bytes] | None = None
        self._zf: zipfile.ZipFile | None = None
        self._open()

    # ------------------------------------------------------------------ archive

    def fail(self, problem: str) -> MultiscaleError:
        """The caller's error for ``problem``, naming the file."""
        return self.error(f"{self.path}: {problem}")

    def _open(self) -> None:
        p = self.path
        if not p.exists():
            raise self.fail("no such file")
        if p.is_dir():
            raise self.fail(f"is a directory, not {self.what}")
        try:
            self.size = p.stat().st_size
            self._fh = open(p, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise self.fail(f"cannot read: {exc.strerror or exc}") from None
        try:
            if self.size == 0:
                raise self.fail(f"empty file (0 bytes); not {self.what}")
            with self._guard():
                self._check_directory(self._fh)
            try:
                self._zf = zipfile.ZipFile(self._fh)
            except _BAD_ARCHIVE as exc:
                raise self.fail(f"not {self.what} (not a readable .npz archive: {exc})") from None
            self._infos = self._check_entries(self._zf)
        except BaseException:
            self.close()
            raise

    def _check_directory(self, fh: IO[bytes]) -> None:
        """Refuse an archive whose central directory is too large, before zipfile parses it.

        Anything that does not look like a zip is left for zipfile to report.
        """
        size = self.size
        tail_len = min(size, _EOCD_SIZE + 65535)
        fh.seek(size - tail_len)
        tail = fh.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD_SIZE:
            fh.seek(0)
            return
        entries, directory_bytes = struct.unpack("<HI", tail[at + 10 : at + 16])
        locator = at - 20  # a zip64 archive keeps the true figures in a record the locator points to
        saturated = entries == 0xFFFF or directory_bytes == 0xFFFFFFFF
        if saturated and tail[locator : locator + 4] == b"PK\x06\x07":
            (record_at,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
            if record_at + 56 <= size:
                fh.seek(record_at)
                record = fh.read(56)
                if record[:4] == b"PK\x06\x06":
                    entries, directory_bytes = struct.unpack("<QQ", record[32:48])
        fh.seek(0)
        if entries > self._max_members or directory_bytes > self._max_directory_bytes:
            raise self.fail(
                f"archive lists {entries} members in {directory_bytes} bytes of directory, more than "
                f"{self.what} has ({self._max_members} members, {self._max_directory_bytes} bytes) — "
                f"not {self.what}"
            )

    def _check_entries(self, zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise self.fail("archive lists a member twice")
        compressed = 0
        for info in infos:
            name = info.filename
            if info.flag_bits & 0x1:
                raise self.fail(f"member {name} is encrypted")
            if info.compress_type not in self._compressions:
                if info.compress_type in _COMPRESSIONS.values():
                    raise self.fail(f"member {name} is compressed; {self.what} is written uncompressed")
                raise self.fail(f"member {name} uses an unsupported compression")
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                raise self.fail(f"member {name}: stored size disagrees with its recorded size")
            if (
                info.compress_type == zipfile.ZIP_DEFLATED
                and info.file_size > MAX_DEFLATE_RATIO * info.compress_size + _DEFLATE_SLACK
            ):
                raise self.fail(
                    f"member {name} claims {info.file_size} bytes from {info.compress_size} compressed, "
                    f"more than deflate's {MAX_DEFLATE_RATIO}:1 can give — corrupted, or a zip bomb"
                )
            compressed += info.compress_size
        if compressed > self.size:
            raise self.fail(f"truncated: members need {compressed} bytes, file has {self.size}")
        return {name: info for name, info in zip(names, infos, strict=True)}

    def close(self) -> None:
        """Close the archive and the file (idempotent)."""
        if self._zf is not None:
            self._zf.close()
            self._zf = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn what a broken archive raises inside zipfile, zlib or numpy into the caller's error."""
        try:
            yield
        except MultiscaleError:
            raise
        except _BAD_ARCHIVE as exc:
            raise self.fail(f"corrupted or truncated archive: {exc}") from None

    # ------------------------------------------------------------------ members

    @property
    def names(self) -> tuple[str, ...]:
        """The archive's entries, as listed (``.npy`` members keep their suffix)."""
        return tuple(self._infos)

    def has(self, name: str) -> bool:
        """Whether member ``name`` (without ``.npy``) is in the archive."""
        return name + ".npy" in self._infos

    def check_names(self, expected: Collection[str], *, fit: str, allowed: Collection[str] = ()) -> None:
        """Refuse an archive that does not hold exactly the ``expected`` members.

        Parameters
        ----------
        expected : collection of str
            Member names without ``.npy``; all must be present.
        fit : str
            What the members must fit, for the message (``"the metadata"``).
        allowed : collection of str
            Further names that may be present (already read, or optional).

        Raises
        ------
        error
            ``"members do not fit {fit}: missing member(s) …; unexpected member(s) …"``.
        """
        wanted = {n + ".npy" for n in expected}
        missing = [n for n in expected if n + ".npy" not in self._infos]
        ok = wanted | {n + ".npy" for n in allowed}
        unexpected = [n for n in self._infos if n not in ok]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append("missing member(s) " + _first_few(missing))
            if unexpected:
                parts.append("unexpected member(s) " + _first_few(unexpected))
            raise self.fail(f"members do not fit {fit}: {'; '.join(parts)}")

    def header(self, name: str, member: Member) -> Header:
        """Read and check the ``.npy`` header of member ``name`` (nothing of its data).

        Raises
        ------
        error
            Missing member, unreadable or oversized header, a dtype or shape
            that ``member`` does not allow, a data size other than the
            archive records.
        """
        info = self._infos.get(name + ".npy")
        if info is None:
            raise self.fail(f"member {name} is missing")
        with self._guard(), self._member(info) as fh:
            try:
                version = npy_format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = npy_format.read_array_header_1_0(
                        fh, max_header_size=self._max_header_size
                    )
                elif version == (2, 0):
                    shape, fortran, dtype = npy_format.read_array_header_2_0(
                        fh, max_header_size=self._max_header_size
                    )
                else:
                    raise self.fail(f"member {name}: unsupported .npy version {version}")
            except MultiscaleError:
                raise
            except (ValueError, SyntaxError, TypeError, EOFError, OverflowError, MemoryError) as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise self.fail(f"member {name}: not a valid .npy header ({first_line})") from None
            offset = fh.tell()
        shape = tuple(int(v) for v in shape)
        if not member.allows(dtype):
            raise self.fail(f"member {name} has dtype {dtype}, expected {member.describe()}")
        if not member.fits(shape):
            want = tuple("any" if v is None else v for v in member.shape)
            raise self.fail(f"member {name} has shape {shape}, expected {want}".replace("'any'", "any"))
        nbytes = math.prod(shape) * dtype.itemsize
        if offset + nbytes != info.file_size:
            raise self.fail(
                f"member {name} declares {nbytes} bytes of data but the archive records {info.file_size - offset}"
            )
        return Header(
            name=name, shape=shape, dtype=dtype, fortran=bool(fortran), offset=offset, nbytes=nbytes
        )

    def headers(self, schema: Mapping[str, Member], *, max_bytes: int | None = None) -> dict[str, Header]:
        """Every header of ``schema`` checked, and their data together against ``max_bytes``.

        Raises
        ------
        error
            As :meth:`header`; or the members declare more than ``max_bytes``
            bytes of data.
        """
        out = {name: self.header(name, member) for name, member in schema.items()}
        needed = sum(h.nbytes for h in out.values())
        if max_bytes is not None and needed > max_bytes:
            raise self.fail(f"declares {needed} bytes of arrays, more than the {max_bytes} allowed")
        return out

    def read(
        self, schema: Mapping[str, Member], *, max_bytes: int | None = None, into: Into | None = None
    ) -> dict[str, np.ndarray]:
        """Read the members of ``schema``: all headers first (:meth:`headers`), then the data.

        Parameters
        ----------
        schema : mapping of str to Member
            Member names (without ``.npy``) and what each must be. Members of
            the archive not named here are not read (see :meth:`check_names`).
        max_bytes : int, optional
            Most bytes of data the members may declare together.
        into : callable, optional
            Hands out the arrays to read into (see :data:`Into`).

        Returns
        -------
        dict of str to numpy.ndarray
            Native byte order, C order, writable; each the only reference to
            its memory unless ``into`` handed it out.

        Raises
        ------
        error
            As :meth:`headers`; truncated or corrupted data (CRC), trailing
            bytes, non-finite values where ``finite``.
        """
        headers = self.headers(schema, max_bytes=max_bytes)
        return {name: self._data(headers[name], schema[name], into) for name in schema}

    def _data(self, header: Header, member: Member, into: Into | None) -> np.ndarray:
        name, shape = header.name, header.shape
        native = header.dtype.newbyteorder("=")
        out = into(name, shape, native) if into is not None else None
        if out is not None and not (
            out.shape == shape and out.dtype == native and out.flags.c_contiguous and out.flags.writeable
        ):
            raise ValueError(f"into() handed out a {out.dtype} {out.shape} array for member {name}")
        if not header.fortran and header.dtype == native:
            raw = target = out if out is not None else np.empty(shape, native)
        else:  # another writer's byte order or Fortran order: read as stored, then convert
            raw, target = np.empty(shape, header.dtype, order="F" if header.fortran else "C"), None
        info = self._infos[name + ".npy"]
        with self._guard(), self._member(info) as fh:
            _skip(fh, header.offset)
            if not _read_into(fh, raw, header.nbytes) or fh.read(1):
                raise self.fail(f"member {name} is truncated or has trailing data")
        if target is None:
            target = out if out is not None else np.empty(shape, native)
            target[...] = raw
        if member.finite and target.dtype.kind in "fc" and not np.isfinite(target).all():
            raise self.fail(f"member {name} has NaN or infinite values")
        return target

    @contextlib.contextmanager
    def _member(self, info: zipfile.ZipInfo) -> Iterator[IO[bytes]]:
        if self._zf is None:
            raise ValueError(f"{self.path}: read from a closed NpzReader")
        with self._zf.open(info) as fh:
            yield fh


def read_npz(
    path: PathLike,
    schema: Mapping[str, Member],
    *,
    error: type[MultiscaleError],
    what: str,
    fit: str,
    max_bytes: int | None = None,
    into: Into | None = None,
    compression: Collection[str] = ("stored", "deflated"),
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_directory_bytes: int = DEFAULT_MAX_DIRECTORY_BYTES,
    max_header_size: int = MAX_HEADER_SIZE,
) -> dict[str, np.ndarray]:
    """Read an ``.npz`` that must hold exactly the members of ``schema``, checked before allocating.

    :class:`NpzReader` (``error``, ``what``, ``compression`` and the
    limits), then :meth:`~NpzReader.check_names` (``fit``) and
    :meth:`~NpzReader.read` (``max_bytes``, ``into``).

    Returns
    -------
    dict of str to numpy.ndarray
        Keyed as ``schema``.
    """
    with NpzReader(
        path,
        error=error,
        what=what,
        compression=compression,
        max_members=max_members,
        max_directory_bytes=max_directory_bytes,
        max_header_size=max_header_size,
    ) as reader:
        reader.check_names(schema, fit=fit)
        return reader.read(schema, max_bytes=max_bytes, into=into)


def write_npz(
    path: PathLike,
    members: Mapping[str, ArrayLike] | Iterable[tuple[str, ArrayLike]],
    *,
    overwrite: bool = False,
    compress: bool = False,
) -> Path:
    """Write ``members`` as an ``.npz`` to ``path``, atomically and reproducibly.

    Members are written in the order given, each as ``NAME.npy`` (C order;
    nothing pickled) with a fixed timestamp, so the same arrays give the same
    bytes. An iterable is consumed one member at a time, so a caller can
    build each large array only when it is written.

    Parameters
    ----------
    path : str or PathLike
        Used as given (no ``.npz`` is appended).
    members : mapping or iterable of (str, array_like)
    overwrite : bool
        Replace an existing file.
    compress : bool
        Deflate the members (default: stored, which :class:`NpzReader` can
        read into preallocated memory without inflating).

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        ``path`` exists and not ``overwrite``, or cannot be written.
    ValueError
        An object array (nothing is pickled).
    """
    items = members.items() if isinstance(members, Mapping) else members
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with (
        atomic_output(path, overwrite=overwrite) as tmp,
        open(tmp, "wb") as fh,
        zipfile.ZipFile(fh, "w", compression=compression, allowZip64=True) as zf,
    ):
        for name, value in items:
            arr = np.asarray(value)
            if not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr)
            info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_DATE)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            # force_zip64: the size is not known before the member is streamed.
            with zf.open(info, "w", force_zip64=True) as out:
                npy_format.write_array(out, arr, allow_pickle=False)
    return Path(path)


def _skip(fh: IO[bytes], nbytes: int) -> None:
    """Read past ``nbytes`` bytes (a member's ``.npy`` header) of a member opened for reading."""
    if len(fh.read(nbytes)) != nbytes:
        raise EOFError("member ends inside its header")


def _read_into(fh: IO[bytes], out: np.ndarray, nbytes: int) -> bool:
    """Fill contiguous ``out`` (``nbytes`` bytes) from ``fh`` in chunks; False if the member ends first."""
    view = memoryview(out.reshape(-1, order="A")).cast("B") if nbytes else memoryview(b"")
    done = 0
    while done < nbytes:
        chunk = fh.read(min(READ_CHUNK, nbytes - done))
        if not chunk:
            return False
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    return True


def _first_few(names: list[str], limit: int = 10) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
