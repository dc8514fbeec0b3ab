"""The checked npz reader and the atomic, reproducible npz writer (multiscale.npz)."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

import multiscale.npz as npz
from multiscale.errors import CheckpointError, DescriptorError, OutputError
from multiscale.npz import Member, NpzReader, read_npz, write_npz

F64 = Member((None,))


def members() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "text": np.frombuffer(b'{"a": 1}', np.uint8),
        "x": rng.normal(size=1000),
        "S": rng.normal(size=(3, 1000)).astype(np.float32),
        "empty": np.zeros((0, 1000), np.float32),
        "flag": np.bool_(True),
        "count": np.int64(7),
        "gram/0/pool1": np.eye(4),
    }


SCHEMA = {
    "text": Member((None,), (np.uint8,)),
    "x": Member((1000,), finite=True),
    "S": Member((None, 1000), (np.float32,)),
    "empty": Member((None, None), (np.float32,)),
    "flag": Member((), (np.bool_,)),
    "count": Member((), (np.int64,)),
    "gram/0/pool1": Member((4, 4)),
}


def read(path: Path, schema=SCHEMA, **kwargs) -> dict[str, np.ndarray]:
    return read_npz(path, schema, error=DescriptorError, what="a test file", fit="the test", **kwargs)


def npy_bytes(arr: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    npy_format.write_array(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def raw_zip(path: Path, entries: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def refused(path: Path, match: str, *, error=DescriptorError, schema=SCHEMA, **kwargs) -> str:
    with pytest.raises(error, match=match) as info:
        read_npz(path, schema, error=error, what="a test file", fit="the test", **kwargs)
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    return str(info.value)


@pytest.fixture
def good(tmp_path) -> Path:
    return write_npz(tmp_path / "good.npz", members())


# ---------------------------------------------------------------- writing and reading back


def test_round_trip_keeps_names_dtypes_shapes_and_values(good):
    back = read(good)
    for name, value in members().items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape, name
        np.testing.assert_array_equal(back[name], value)
        assert back[name].flags.writeable and back[name].flags.c_contiguous


def test_numpy_reads_what_it_writes_and_it_reads_what_numpy_writes(good, tmp_path):
    with np.load(good, allow_pickle=False) as z:
        assert list(z.keys()) == list(members())
        np.testing.assert_array_equal(z["S"], members()["S"])
    theirs = tmp_path / "theirs.npz"
    np.savez(theirs, **members())
    for name, value in read(theirs).items():
        np.testing.assert_array_equal(value, members()[name])


def test_the_same_arrays_give_the_same_bytes(tmp_path):
    a = write_npz(tmp_path / "a.npz", members())
    b = write_npz(tmp_path / "b.npz", iter(members().items()))
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        assert {i.date_time for i in zf.infolist()} == {npz.ZIP_DATE}
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def test_compressed_members_round_trip_where_allowed(tmp_path):
    path = write_npz(tmp_path / "z.npz", members(), compress=True)
    with zipfile.ZipFile(path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    np.testing.assert_array_equal(read(path)["x"], members()["x"])
    refused(
        path, "member text.npy is compressed; a test file is written uncompressed", compression=("stored",)
    )


def test_writing_is_atomic_and_does_not_overwrite_unless_asked(good):
    before = good.read_bytes()
    with pytest.raises(OutputError, match="exists"):
        write_npz(good, {"x": np.zeros(3)})

    def failing():
        yield "x", np.zeros(3)
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_npz(good, failing(), overwrite=True)
    assert good.read_bytes() == before
    assert [p.name for p in good.parent.iterdir()] == ["good.npz"]
    write_npz(good, {"x": np.zeros(3)}, overwrite=True)
    assert read(good, {"x": F64})["x"].shape == (3,)


def test_object_arrays_are_not_written(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        write_npz(tmp_path / "o.npz", {"o": np.array([object()])})
    assert not list(tmp_path.iterdir())


def test_non_contiguous_input_is_written_in_c_order(tmp_path):
    a = np.arange(12.0).reshape(3, 4)
    path = write_npz(tmp_path / "t.npz", {"t": a.T, "s": a[:, ::2]})
    back = read(path, {"t": Member((4, 3)), "s": Member((3, 2))})
    np.testing.assert_array_equal(back["t"], a.T)
    np.testing.assert_array_equal(back["s"], a[:, ::2])


def test_other_byte_orders_and_fortran_order_are_converted(tmp_path):
    a = np.arange(12.0).reshape(3, 4)
    path = raw_zip(
        tmp_path / "o.npz", {"big.npy": npy_bytes(a.astype(">f8")), "f.npy": npy_bytes(np.asfortranarray(a))}
    )
    back = read(path, {"big": Member((3, 4)), "f": Member((3, 4))})
    for value in back.values():
        assert value.dtype == np.dtype(np.float64) and value.dtype.isnative and value.flags.c_contiguous
        np.testing.assert_array_equal(value, a)


# ---------------------------------------------------------------- chunked reading


def test_members_are_read_in_chunks_into_one_array(tmp_path, monkeypatch):
    big = np.arange(2 * 1024**2, dtype=np.float64)  # 16 MiB
    path = write_npz(tmp_path / "big.npz", {"big": big})
    monkeypatch.setattr(npz, "READ_CHUNK", 1 << 20)
    tracemalloc.start()
    try:
        back = read(path, {"big": F64})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(back["big"], big)
    assert peak < big.nbytes + 3 * (1 << 20), f"peak {peak} bytes: the member was held twice"


def test_into_hands_out_the_memory_to_fill(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    s, y = rng.normal(size=(2, 1000)).astype(np.float32), rng.normal(size=(3, 1000)).astype(np.float32)
    path = write_npz(tmp_path / "sy.npz", {"S": s, "Y": y, "x": np.ones(5)})
    block = np.zeros((8, 1000), np.float32)
    calls = []

    def into(name, shape, dtype):
        calls.append((name, shape, dtype))
        return block[:2] if name == "S" else block[4:7] if name == "Y" else None

    monkeypatch.setattr(npz, "READ_CHUNK", 1000)
    schema = {"S": Member((None, 1000), (np.float32,)), "Y": Member((None, 1000), (np.float32,)), "x": F64}
    back = read(path, schema, into=into)
    assert [c[:2] for c in calls] == [("S", (2, 1000)), ("Y", (3, 1000)), ("x", (5,))]
    assert back["S"].base is block and back["Y"].base is block and not np.shares_memory(back["x"], block)
    np.testing.assert_array_equal(block[:2], s)
    np.testing.assert_array_equal(block[4:7], y)
    assert not block[2:4].any() and not block[7:].any()


def test_into_must_hand_out_the_right_array(good):
    with pytest.raises(ValueError, match="into"):
        read(good, {"x": F64}, into=lambda name, shape, dtype: np.zeros(shape, np.float32))


# ---------------------------------------------------------------- refusals


def test_missing_empty_directory_and_unreadable_files_are_refused(tmp_path, monkeypatch):
    refused(tmp_path / "nope.npz", "no such file")
    refused(tmp_path, "is a directory, not a test file")
    (tmp_path / "empty.npz").write_bytes(b"")
    refused(tmp_path / "empty.npz", r"empty file \(0 bytes\)")
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    refused(tmp_path / "random.npz", r"not a test file \(not a readable .npz archive")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(npz, "open", denied, raising=False)
    refused(tmp_path / "random.npz", "cannot read: Permission denied")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.99])
def test_a_truncated_file_is_refused(good, tmp_path, keep):
    data = good.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: int(len(data) * keep)])
    refused(cut, "not a test file|truncated|corrupted")


def test_a_corrupted_member_fails_its_checksum(good, tmp_path):
    data = bytearray(good.read_bytes())
    at = bytes(data).index(members()["x"].tobytes()) + 100
    data[at] ^= 0x01
    bad = tmp_path / "crc.npz"
    bad.write_bytes(bytes(data))
    refused(bad, "corrupted or truncated archive: Bad CRC-32")


def test_missing_and_unexpected_members_are_refused_by_name(good, tmp_path):
    refused(good, r"members do not fit the test: missing member\(s\) y", schema={**SCHEMA, "y": F64})
    extra = dict(members(), extra=np.zeros(2))
    path = write_npz(tmp_path / "extra.npz", extra)
    refused(path, r"members do not fit the test: unexpected member\(s\) extra.npy")
    with NpzReader(path, error=DescriptorError, what="a test file") as reader:
        reader.check_names(SCHEMA, fit="the test", allowed=("extra",))
        assert reader.has("extra") and not reader.has("nope")


def test_a_member_listed_twice_is_refused(good):
    with pytest.warns(UserWarning, match="Duplicate"), zipfile.ZipFile(good, "a") as zf:
        zf.writestr("x.npy", npy_bytes(np.zeros(1000)))
    refused(good, "lists a member twice")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.zeros(1000, np.float32), r"member x has dtype float32, expected float64"),
        (np.zeros(999), r"member x has shape \(999,\), expected \(1000,\)"),
        (np.zeros((1000, 1)), r"member x has shape \(1000, 1\), expected \(1000,\)"),
        (np.full(1000, np.inf), "member x has NaN or infinite values"),
        (np.zeros(1000, [("a", "<f8")]), "member x has dtype"),
    ],
)
def test_a_member_of_the_wrong_dtype_shape_or_values_is_refused(tmp_path, value, match):
    path = write_npz(tmp_path / "bad.npz", dict(members(), x=value))
    refused(path, match)


class _Trap:
    """Unpickling this records it: the reader must refuse without unpickling."""

    triggered: list[int] = []

    def __reduce__(self):
        return (_Trap.triggered.append, (1,))


def test_an_object_member_is_refused_without_unpickling(tmp_path):
    trap = np.empty(1000, dtype=object)
    trap[:] = _Trap()
    entries = {f"{k}.npy": npy_bytes(v) for k, v in members().items()}
    entries["x.npy"] = npy_bytes(trap, allow_pickle=True)
    _Trap.triggered.clear()
    refused(raw_zip(tmp_path / "pickle.npz", entries), "member x has dtype object, expected float64")
    assert _Trap.triggered == []


def test_a_header_claiming_more_than_the_archive_holds_is_refused_before_allocating(tmp_path):
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    path = raw_zip(tmp_path / "lie.npz", {"x.npy": header.getvalue() + b"\0" * 64})
    tracemalloc.start()
    try:
        refused(
            path,
            "member x declares 8000000000000 bytes of data but the archive records 64",
            schema={"x": F64},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024**2


def test_an_oversized_or_broken_npy_header_is_refused(tmp_path):
    text = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }"
    text += b" " * (20000 - len(text) - 1) + b"\n"
    long = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text + b"\0" * 8
    path = raw_zip(tmp_path / "long.npz", {"x.npy": long})
    message = refused(
        path, r"member x: not a valid .npy header \(Header info length \(20000\) is large", schema={"x": F64}
    )
    assert "\n" not in message
    assert read(path, {"x": F64}, max_header_size=30000)["x"].shape == (1,)
    bad = raw_zip(tmp_path / "bad.npz", {"x.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}  \n"})
    refused(bad, r"member x: not a valid .npy header", schema={"x": F64})
    v3 = raw_zip(tmp_path / "v3.npz", {"x.npy": b"\x93NUMPY\x07\x00" + b"\0" * 8})
    refused(v3, r"member x: not a valid .npy header|unsupported .npy version", schema={"x": F64})


def test_declared_data_beyond_max_bytes_is_refused_before_reading(good):
    refused(good, r"declares \d+ bytes of arrays, more than the 1000 allowed", max_bytes=1000)


def test_an_archive_listing_too_many_members_is_refused_before_zipfile_parses_it(tmp_path, monkeypatch):
    path = raw_zip(tmp_path / "many.npz", {f"{i}": b"" for i in range(5000)})

    def parsed(*args, **kwargs):
        raise AssertionError("zipfile parsed the directory")

    monkeypatch.setattr(npz.zipfile, "ZipFile", parsed)
    refused(
        path,
        r"archive lists 5000 members in \d+ bytes of directory, more than a test file has \(4096 members",
    )
    refused(path, "archive lists 5000 members", max_members=10**6, max_directory_bytes=100)


def test_a_deflated_member_claiming_more_than_deflate_can_give_is_refused(tmp_path):
    path = raw_zip(
        tmp_path / "bomb.npz", {"x.npy": npy_bytes(np.zeros(1000))}, compression=zipfile.ZIP_DEFLATED
    )
    data = bytearray(path.read_bytes())
    central = bytes(data).rindex(b"PK\x01\x02")
    compressed, _ = struct.unpack("<II", data[central + 20 : central + 28])
    claimed = 4 * 1024**3 - 1
    data[central + 24 : central + 28] = struct.pack(
        "<I", claimed
    )  # uncompressed size in the central directory
    path.write_bytes(bytes(data))
    refused(
        path, f"member x.npy claims {claimed} bytes from {compressed} compressed.*zip bomb", schema={"x": F64}
    )


def test_the_callers_error_class_is_raised(good):
    refused(good, "missing member", error=CheckpointError, schema={"nope": F64})
