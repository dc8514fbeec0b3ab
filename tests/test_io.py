"""Specification of multiscale.io: what goes in, what comes out, what is refused."""

from __future__ import annotations

import builtins
import errno
import hashlib
import os
import stat
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

import multiscale.io as mio
from multiscale.config import DEFAULT_MAX_INPUT_PIXELS, DescriptorConfig
from multiscale.errors import ConfigError, ImageError, OutputError
from multiscale.io import (
    atomic_output,
    file_sha256,
    image_size,
    list_images,
    load_image,
    resize_image,
    save_image,
    scale_source,
    scaled_size,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def rgb_noise(height: int = 16, width: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def save_pil(path: Path, array_or_image, **kwargs) -> Path:
    im = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    im.save(path, **kwargs)
    return path


def assert_is_image(out: np.ndarray, shape: tuple[int, int]) -> None:
    assert out.dtype == np.float32
    assert out.shape == (*shape, 3)
    assert out.flags.c_contiguous
    assert out.min() >= 0.0 and out.max() <= 1.0


# ---------------------------------------------------------------------------
# load_image: files that are not usable images
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("zero_bytes", "empty file"),
        ("text", "not a recognised image"),
        ("random_bytes", "not a recognised image"),
        ("truncated_png", "truncated"),
        ("truncated_jpeg", "truncated"),
    ],
)
def test_unusable_file_is_an_image_error_naming_it(bad_image_files, fault, says):
    path = bad_image_files[fault]
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert says in message


def test_truncated_files_do_not_switch_on_pillows_truncated_loading(bad_image_files):
    for fault in ("truncated_png", "truncated_jpeg"):
        with pytest.raises(ImageError):
            load_image(bad_image_files[fault])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_unreadable_file_is_an_image_error(tmp_path, monkeypatch):
    path = save_pil(tmp_path / "secret.png", np.zeros((4, 4, 3), np.uint8))
    if IS_ROOT:
        # root reads anything despite chmod: make open() refuse instead.
        def refuse(file, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return builtins.open(file, *args, **kwargs)

        monkeypatch.setattr(mio, "open", refuse, raising=False)
    else:
        path.chmod(0)
    try:
        with pytest.raises(ImageError, match="permission denied") as info:
            load_image(path)
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert str(info.value).startswith(str(path))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_reading_it(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(fifo)


# ---------------------------------------------------------------------------
# load_image: decompression bombs
# ---------------------------------------------------------------------------


def test_bomb_header_is_refused_before_decoding_with_size_and_option(bad_image_files):
    path = bad_image_files["bomb_png"]
    assert path.stat().st_size < 100
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "50000×50000" in message
    assert f"{DEFAULT_MAX_INPUT_PIXELS:,}" in message
    assert "max_input_pixels" in message and "--max-input-pixels" in message


def test_max_pixels_is_checked_against_width_times_height(tmp_path):
    path = save_pil(tmp_path / "small.png", np.zeros((8, 10, 3), np.uint8))
    assert load_image(path, max_pixels=80).shape == (8, 10, 3)
    with pytest.raises(ImageError, match="10×8 = 80 pixels, more than the limit of 79"):
        load_image(path, max_pixels=79)


def test_our_limit_applies_rather_than_pillows(tmp_path, monkeypatch):
    # Pillow refuses images above twice its MAX_IMAGE_PIXELS by itself; a
    # user who raised --max-input-pixels must still get the image.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = save_pil(tmp_path / "big.png", np.full((32, 32, 3), 7, np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = load_image(path, max_pixels=10_000)
    assert np.all(out == np.float32(7 / 255))
    assert Image.MAX_IMAGE_PIXELS == 100


def test_pillows_own_bomb_error_becomes_an_image_error(tmp_path, monkeypatch):
    path = save_pil(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))

    def refuse(self):
        raise Image.DecompressionBombError("Image size (16 pixels) exceeds limit")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    with pytest.raises(ImageError, match="decompression bomb.*--max-input-pixels") as info:
        load_image(path)
    assert str(info.value).startswith(str(path))


def test_invalid_options_are_config_errors(tmp_path):
    path = save_pil(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ConfigError, match="max_input_pixels"):
        load_image(path, max_pixels=0)
    with pytest.raises(ConfigError, match="background"):
        load_image(path, background=(1.0, 2.0, 0.0))
    with pytest.raises(ConfigError, match="background"):
        load_image(path, background=(1.0, 1.0))


# ---------------------------------------------------------------------------
# load_image: every mode becomes RGB in [0, 1]
# ---------------------------------------------------------------------------


def test_rgb_8bit_is_divided_by_255(tmp_path):
    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
    out = load_image(save_pil(tmp_path / "rgb.png", pixels))
    assert_is_image(out, (4, 6))
    np.testing.assert_array_equal(out, pixels.astype(np.float32) / np.float32(255))


def test_bilevel_is_black_and_white(tmp_path):
    bits = np.array([[True, False], [False, True]])
    out = load_image(save_pil(tmp_path / "bits.png", Image.fromarray(bits)))
    np.testing.assert_array_equal(out[..., 0], bits.astype(np.float32))
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_grey_is_repeated_into_three_channels(tmp_path):
    grey = np.array([[0, 51], [204, 255]], np.uint8)
    out = load_image(save_pil(tmp_path / "grey.png", grey))
    for c in range(3):
        np.testing.assert_allclose(out[..., c], grey / 255, atol=1e-7)


def test_grey_alpha_is_composited_over_white(tmp_path):
    la = np.array([[[0, 255], [0, 0]], [[0, 51], [255, 102]]], np.uint8)
    out = load_image(save_pil(tmp_path / "la.png", Image.fromarray(la, "LA")))
    grey, alpha = la[..., 0] / 255, la[..., 1] / 255
    expected = grey * alpha + 1.0 * (1 - alpha)
    np.testing.assert_allclose(out[..., 1], expected, atol=1e-6)


def test_rgba_is_composited_over_the_given_background(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 51]]], np.uint8)
    path = save_pil(tmp_path / "rgba.png", rgba)
    white = load_image(path)
    np.testing.assert_allclose(white[0, 0], [1, 0, 0])
    np.testing.assert_allclose(white[0, 1], [1, 1, 1])
    np.testing.assert_allclose(white[0, 2], [0.8, 0.8, 1.0], atol=1e-6)
    black = load_image(path, background=(0.0, 0.0, 0.0))
    np.testing.assert_allclose(black[0, 1], [0, 0, 0])
    np.testing.assert_allclose(black[0, 2], [0, 0, 0.2], atol=1e-6)


def _palette_image(mode: str = "P") -> Image.Image:
    im = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    return im


def test_palette_image_gives_its_colours(tmp_path):
    out = load_image(save_pil(tmp_path / "p.png", _palette_image()))
    np.testing.assert_array_equal(out[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 1, 0])
    np.testing.assert_array_equal(out[1, 0], [0, 0, 1])


def test_palette_transparency_is_composited(tmp_path):
    out = load_image(save_pil(tmp_path / "pt.png", _palette_image(), transparency=1), background=(0, 0, 0))
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])
    np.testing.assert_array_equal(out[1, 1], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 0], [1, 0, 0])


def test_palette_with_alpha_band_is_composited(tmp_path):
    pa = _palette_image().convert("PA")
    pa.putalpha(Image.fromarray(np.array([[255, 0], [255, 0]], np.uint8)))
    assert pa.mode == "PA"
    out = load_image(save_pil(tmp_path / "pa.tif", pa))
    np.testing.assert_array_equal(out[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [1, 1, 1])
    np.testing.assert_array_equal(out[1, 0], [0, 0, 1])


def test_single_colour_transparency_of_grey_and_rgb(tmp_path):
    grey = np.array([[10, 20]], np.uint8)
    out = load_image(save_pil(tmp_path / "lt.png", grey, transparency=20), background=(0, 0, 1))
    np.testing.assert_array_equal(out[0, 1], [0, 0, 1])
    np.testing.assert_allclose(out[0, 0], [10 / 255] * 3)
    rgb = np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8)
    out = load_image(save_pil(tmp_path / "rgbt.png", rgb, transparency=(4, 5, 6)), background=(0, 1, 0))
    np.testing.assert_array_equal(out[0, 1], [0, 1, 0])


def test_cmyk_is_converted_to_rgb(tmp_path):
    cmyk = np.array([[[0, 255, 255, 0], [0, 0, 0, 255], [0, 0, 0, 0]]], np.uint8)
    out = load_image(save_pil(tmp_path / "cmyk.tif", Image.fromarray(cmyk, "CMYK")))
    np.testing.assert_array_equal(out[0], [[1, 0, 0], [0, 0, 0], [1, 1, 1]])


def test_16bit_grey_is_scaled_by_65535_not_clipped(tmp_path):
    values = np.array([[0, 255, 1000, 65535]], np.uint16)
    im = Image.fromarray(values)
    assert im.mode.startswith("I;16")
    out = load_image(save_pil(tmp_path / "g16.png", im))
    np.testing.assert_array_equal(out[0, :, 0], values[0].astype(np.float32) / np.float32(65535))


@pytest.mark.parametrize(
    ("values", "divisor"),
    [
        ([0, 100, 200], 255),
        ([0, 300, 40000], 65535),
    ],
)
def test_32bit_integer_scale_follows_the_value_range(tmp_path, values, divisor):
    im = Image.fromarray(np.array([values], np.int32))
    assert im.mode == "I"
    out = load_image(save_pil(tmp_path / "i.tif", im))
    np.testing.assert_allclose(out[0, :, 0], np.array(values) / divisor, rtol=1e-6)


def test_32bit_integer_beyond_16bit_range_is_min_max_normalised(tmp_path):
    im = Image.fromarray(np.array([[-5, 100_005, 50_000]], np.int32))
    out = load_image(save_pil(tmp_path / "i.tif", im))
    np.testing.assert_allclose(out[0, :, 0], [0.0, 1.0, 0.5], atol=1e-6)


def test_float_image_in_unit_range_is_taken_as_is(tmp_path):
    values = np.array([[0.0, 0.25, 1.0]], np.float32)
    out = load_image(save_pil(tmp_path / "f.tif", Image.fromarray(values)))
    np.testing.assert_array_equal(out[0, :, 1], values[0])


def test_float_image_outside_unit_range_is_min_max_normalised(tmp_path):
    values = np.array([[-2.0, 0.0, 2.0]], np.float32)
    out = load_image(save_pil(tmp_path / "f.tif", Image.fromarray(values)))
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.5, 1.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_image_with_nan_or_inf_is_an_error(tmp_path, bad):
    path = save_pil(tmp_path / "nan.tif", Image.fromarray(np.array([[0.5, bad]], np.float32)))
    with pytest.raises(ImageError, match="NaN or infinite") as info:
        load_image(path)
    assert str(info.value).startswith(str(path))


# ---------------------------------------------------------------------------
# load_image: 16-bit colour keeps every bit
# ---------------------------------------------------------------------------


def test_16bit_rgb_and_rgba_png_keep_full_precision(tmp_path, png_builder):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 65536, (5, 7, 3))
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_builder(rgb, colour_type=2))
    np.testing.assert_array_equal(load_image(path), (rgb / 65535).astype(np.float32))

    rgba = rng.integers(0, 65536, (5, 7, 4))
    path = tmp_path / "rgba16.png"
    path.write_bytes(png_builder(rgba, colour_type=6))
    alpha = rgba[..., 3:] / 65535
    expected = rgba[..., :3] / 65535 * alpha + (1 - alpha) * 0.5
    np.testing.assert_allclose(load_image(path, background=(0.5, 0.5, 0.5)), expected, atol=2e-7)


def test_16bit_grey_alpha_png_keeps_full_precision(tmp_path, png_builder):
    la = np.random.default_rng(2).integers(0, 65536, (4, 6, 2))
    path = tmp_path / "la16.png"
    path.write_bytes(png_builder(la, colour_type=4))
    expected = la[..., :1] / 65535 * (la[..., 1:] / 65535)
    np.testing.assert_allclose(load_image(path, background=(0, 0, 0)), np.repeat(expected, 3, -1), atol=2e-7)


# ---------------------------------------------------------------------------
# load_image: orientation and animation
# ---------------------------------------------------------------------------


def test_exif_orientation_6_rotates_a_jpeg(tmp_path):
    # Stored 32 wide × 16 tall, left half red, right half blue; orientation 6
    # means "rotate 90° clockwise to display": 16 wide × 32 tall, red on top.
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = (255, 0, 0)
    stored[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save_pil(tmp_path / "rotated.jpg", stored, exif=exif, quality=95)
    out = load_image(path)
    assert_is_image(out, (32, 16))
    np.testing.assert_allclose(out[4, 8], [1, 0, 0], atol=0.05)
    np.testing.assert_allclose(out[27, 8], [0, 0, 1], atol=0.05)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillows_exif_transpose(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 8, 3), dtype=np.uint8)
    path = save_pil(tmp_path / "o.png", pixels, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path))).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(load_image(path), expected)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_image_size_is_load_images_size(tmp_path, orientation, suffix):
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels = np.zeros((5, 8, 3), dtype=np.uint8)
    path = save_pil(tmp_path / f"o{suffix}", pixels, exif=exif)
    height, width = load_image(path).shape[:2]
    assert image_size(path) == (width, height)


def test_image_size_refuses_what_load_image_refuses(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    with pytest.raises(ImageError, match="notes.txt: not a recognised image"):
        image_size(text)
    big = save_pil(tmp_path / "big.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ImageError, match="decompression bomb"):
        image_size(big, max_pixels=100)
    with pytest.raises(ImageError, match="no such file"):
        image_size(tmp_path / "missing.png")


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
def test_animation_gives_the_first_frame_and_a_warning(tmp_path, suffix):
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / f"anim{suffix}"
    kwargs = {"lossless": True} if suffix == ".webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **kwargs)
    with pytest.warns(UserWarning, match=f"anim{suffix}.*first frame"):
        out = load_image(path)
    assert_is_image(out, (6, 8))
    np.testing.assert_array_equal(out, np.broadcast_to(np.float32([1, 0, 0]), (6, 8, 3)))


def test_a_still_image_gives_no_warning(tmp_path):
    path = save_pil(tmp_path / "still.gif", np.zeros((4, 4, 3), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(path)


# ---------------------------------------------------------------------------
# save_image
# ---------------------------------------------------------------------------


def smooth_rgb(height: int = 16, width: int = 24) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    return np.stack([x, y, 0.5 + 0.4 * np.sin(3 * (x + y))], axis=-1).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "bit_depth"),
    [("out.png", 8), ("out.png", 16), ("out.tif", 8), ("out.tiff", 16), ("out.TIF", 16)],
)
def test_lossless_round_trip_is_exact_to_the_level(tmp_path, name, bit_depth):
    image = rgb_noise()
    path = save_image(tmp_path / name, image, bit_depth=bit_depth)
    assert path == tmp_path / name
    out = load_image(path)
    assert_is_image(out, image.shape[:2])
    top = 2**bit_depth - 1
    np.testing.assert_array_equal(out, np.rint(image * top) / np.float32(top))


@pytest.mark.parametrize("name", ["out.jpg", "out.jpeg", "out.webp"])
def test_lossy_round_trip_is_close(tmp_path, name):
    image = smooth_rgb()
    out = load_image(save_image(tmp_path / name, image))
    assert_is_image(out, image.shape[:2])
    assert np.abs(out - image).mean() < 0.01


@pytest.mark.parametrize("quality", [1, 95, 100])
def test_jpeg_of_pure_noise_at_any_quality_is_written(tmp_path, quality):
    # 256² because Pillow's optimize=True buffer (2 bytes/px, at least 64 KiB)
    # overflows only above about 32k pixels of noise.
    path = save_image(tmp_path / f"n{quality}.jpg", rgb_noise(256, 256), quality=quality)
    assert load_image(path).shape == (256, 256, 3)


def test_webp_at_quality_100_is_lossless(tmp_path):
    image = rgb_noise()
    out = load_image(save_image(tmp_path / "l.webp", image, quality=100))
    np.testing.assert_array_equal(out, np.rint(image * 255) / np.float32(255))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_every_16bit_level_survives_exactly(tmp_path, suffix):
    levels = np.resize(np.arange(65536, dtype=np.uint16), (64, 342, 3))
    path = save_image(tmp_path / f"levels{suffix}", levels / np.float32(65535), bit_depth=16)
    np.testing.assert_array_equal(np.rint(load_image(path) * 65535).astype(np.uint16), levels)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_pillow_reads_our_16bit_files(tmp_path, suffix):
    levels = np.random.default_rng(3).integers(0, 65536, (6, 9, 3)).astype(np.uint16)
    path = save_image(tmp_path / f"p{suffix}", levels / np.float32(65535), bit_depth=16)
    with Image.open(path) as im:
        assert im.size == (9, 6)
        # Pillow keeps 8 bits of 16-bit RGB: the high byte.
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), (levels >> 8).astype(np.uint8))


def test_16bit_png_is_well_formed_and_carries_no_metadata(tmp_path):
    path = save_image(tmp_path / "x.png", rgb_noise(3, 5), bit_depth=16)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and set(kinds[1:-1]) == {b"IDAT"}
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (5, 3, 16, 2)


def test_values_are_clipped_and_rounded_to_the_nearest_level(tmp_path):
    image = np.array([[[-0.5, 1.5, 10.49 / 255], [10.51 / 255, 0.0, 1.0]]], np.float32)
    path = save_image(tmp_path / "c.png", image)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), [[[0, 255, 10], [11, 0, 255]]])


@pytest.mark.parametrize(
    ("name", "bit_depth"),
    [("d.png", 8), ("d.png", 16), ("d.tif", 8), ("d.tif", 16), ("d.jpg", 8), ("d.webp", 8)],
)
def test_same_array_gives_same_bytes(tmp_path, name, bit_depth):
    image = rgb_noise(seed=4)
    first = save_image(tmp_path / f"1{name}", image, bit_depth=bit_depth).read_bytes()
    second = save_image(tmp_path / f"2{name}", image, bit_depth=bit_depth).read_bytes()
    assert first == second


def test_batch_of_one_is_accepted(tmp_path):
    image = rgb_noise(4, 4)
    out = load_image(save_image(tmp_path / "b.png", image[None]))
    np.testing.assert_allclose(out, image, atol=0.5 / 255)


def test_existing_file_is_not_overwritten_without_overwrite(tmp_path):
    path = tmp_path / "keep.png"
    path.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists.*--overwrite") as info:
        save_image(path, rgb_noise())
    assert str(info.value).startswith(str(path))
    assert path.read_bytes() == b"old"
    save_image(path, rgb_noise(), overwrite=True)
    assert load_image(path).shape == (16, 24, 3)


def test_output_permissions_follow_the_umask(tmp_path):
    path = save_image(tmp_path / "perm.png", rgb_noise(4, 4))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_missing_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        save_image(tmp_path / "nowhere" / "x.png", rgb_noise())


@pytest.mark.parametrize("name", ["x.jpg", "x.jpeg", "x.webp"])
def test_16bit_into_an_8bit_format_is_refused(tmp_path, name):
    with pytest.raises(OutputError, match="8 bits per channel only.*png"):
        save_image(tmp_path / name, rgb_noise(), bit_depth=16)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("name", ["x.bmp", "x.gif", "x", "x.PNG.txt"])
def test_unknown_extension_lists_the_supported_ones(tmp_path, name):
    with pytest.raises(OutputError, match=r"\.png, \.jpg, \.jpeg, \.tif, \.tiff, \.webp"):
        save_image(tmp_path / name, rgb_noise())


def test_extension_is_case_insensitive(tmp_path):
    assert load_image(save_image(tmp_path / "UP.PNG", rgb_noise(4, 4))).shape == (4, 4, 3)


def test_invalid_arguments(tmp_path):
    with pytest.raises(ConfigError, match="bit_depth"):
        save_image(tmp_path / "x.png", rgb_noise(), bit_depth=12)
    with pytest.raises(ConfigError, match="quality"):
        save_image(tmp_path / "x.jpg", rgb_noise(), quality=0)
    with pytest.raises(ValueError, match="shape"):
        save_image(tmp_path / "x.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        save_image(tmp_path / "x.png", np.full((4, 4, 3), np.nan, np.float32))
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "old.png"
    path.write_bytes(b"old contents")

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OutputError, match="No space left") as info:
        save_image(path, rgb_noise(), overwrite=True)
    assert str(info.value).startswith(str(path))
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["old.png"]


def test_read_only_folder_is_an_output_error(tmp_path, monkeypatch):
    if IS_ROOT:
        # root can write anywhere: make the temporary file fail as it would.
        def read_only(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    else:
        tmp_path.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write in") as info:
            save_image(tmp_path / "x.png", rgb_noise())
    finally:
        tmp_path.chmod(0o755)
    assert str(info.value).startswith(str(tmp_path / "x.png"))
    assert list(tmp_path.iterdir()) == []


def test_a_failing_writer_leaves_nothing_behind(tmp_path):
    path = tmp_path / "partial.bin"
    path.write_bytes(b"before")
    with pytest.raises(RuntimeError), atomic_output(path, overwrite=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert path.read_bytes() == b"before"
    assert [p.name for p in tmp_path.iterdir()] == ["partial.bin"]


# ---------------------------------------------------------------------------
# resize_image
# ---------------------------------------------------------------------------


def test_resize_gives_float32_of_the_asked_size():
    out = resize_image(rgb_noise(16, 24), width=10, height=7)
    assert_is_image(out, (7, 10))


def test_resize_keeps_a_constant_image_constant():
    image = np.full((20, 30, 3), [0.2, 0.5, 0.9], np.float32)
    for width, height in ((15, 10), (60, 40), (7, 33)):
        out = resize_image(image, width=width, height=height)
        np.testing.assert_allclose(out, np.broadcast_to(image[0, 0], out.shape), atol=1e-6)


def test_downscaling_averages_fine_detail_away():
    checker = np.indices((32, 32)).sum(axis=0) % 2
    image = np.repeat(checker[..., None], 3, axis=-1).astype(np.float32)
    out = resize_image(image, width=8, height=8)
    np.testing.assert_allclose(out[2:-2, 2:-2], 0.5, atol=0.02)


def test_resize_clips_lanczos_overshoot():
    step = np.zeros((16, 16, 3), np.float32)
    step[:, 8:] = 1.0
    out = resize_image(step, width=40, height=40)
    assert out.min() == 0.0 and out.max() == 1.0


def test_resize_to_the_same_size_is_a_copy():
    image = rgb_noise(8, 8)
    out = resize_image(image, width=8, height=8)
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_resize_rejects_bad_sizes():
    with pytest.raises(ValueError, match="width"):
        resize_image(rgb_noise(), width=0, height=4)
    with pytest.raises(ValueError, match="shape"):
        resize_image(np.zeros((4, 4)), width=2, height=2)


@pytest.mark.parametrize(
    "scale,source_width,expected",
    [
        (1.0, None, (24, 16)),
        (0.5, None, (12, 8)),
        (0.1, None, (2, 2)),
        (0.01, None, (1, 1)),
        (1.0, 12, (12, 8)),
    ],
)
def test_scale_source_sizes(scale, source_width, expected):
    config = DescriptorConfig(source_scale=scale, source_width=source_width)
    assert scaled_size(24, 16, config=config) == expected
    image = rgb_noise(16, 24)
    out = scale_source(image, config=config)
    assert out.shape == (expected[1], expected[0], 3)
    if expected == (24, 16):
        assert out is image  # unchanged: no copy


# ---------------------------------------------------------------------------
# list_images and file_sha256
# ---------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "sources"
    (root / "sub").mkdir(parents=True)
    for name in ("b.png", "a.JPG", "c.webp", "notes.txt", ".x.png.tmp.png", "sub/d.tif"):
        (root / name).write_bytes(b"x")
    return root


def test_folder_gives_its_images_sorted_and_says_what_it_skipped(folder):
    images, skipped = list_images(folder)
    assert [p.name for p in images] == ["a.JPG", "b.png", "c.webp"]
    reasons = {p.name: why for p, why in skipped}
    assert "extension" in reasons["notes.txt"]
    assert "hidden" in reasons[".x.png.tmp.png"]
    assert "sub-folder" in reasons["sub"]


def test_recursive_folder_includes_sub_folders(folder):
    images, _ = list_images([folder], recursive=True)
    assert [p.relative_to(folder).as_posix() for p in images] == ["a.JPG", "b.png", "c.webp", "sub/d.tif"]


def test_patterns_files_and_order_of_arguments(folder):
    images, skipped = list_images([folder / "c.webp", str(folder / "*.png"), folder / "c.webp"])
    assert [p.name for p in images] == ["c.webp", "b.png"]
    images, skipped = list_images(str(folder / "*"))
    assert [p.name for p in images] == ["a.JPG", "b.png", "c.webp", "d.tif"]
    assert ("notes.txt", "not an image file extension") in [(p.name, w) for p, w in skipped]


def test_a_named_file_is_taken_whatever_its_extension(folder):
    images, _ = list_images(folder / "notes.txt")
    assert images == [folder / "notes.txt"]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("missing.png", "no such file or folder"),
        ("nothing*.png", "no files match"),
        ("*.txt", "no image files"),
        ("empty", "contains no image files"),
    ],
)
def test_entries_matching_nothing_are_errors(folder, entry, says):
    (folder / "empty").mkdir()
    target = str(folder / entry)
    with pytest.raises(ImageError, match=says) as info:
        list_images([folder, target])
    assert str(info.value).startswith(target)


def test_no_paths_at_all_is_an_error():
    with pytest.raises(ImageError, match="no image paths"):
        list_images([])


def test_file_sha256_streams_and_matches_hashlib(tmp_path):
    data = np.random.default_rng(5).integers(0, 256, (5 << 20) // 2, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_file_sha256_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(OSError, match="missing.bin"):
        file_sha256(tmp_path / "missing.bin")


def test_io_does_not_import_tensorflow():
    code = "import sys, multiscale.io; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
