"""The decoding edge: every kind of input becomes bounded RGB uint8 or one ImageDecodeError naming the file."""

from __future__ import annotations

import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image
from brandsentry.settings import default_settings

LIMITS = default_settings(DecodeLimits, "images")


def decode_limits(**changes) -> DecodeLimits:
    return default_settings(DecodeLimits, "images", **changes)


RED, BLUE = (255, 0, 0), (0, 0, 255)


def png_with_declared_size(width: int, height: int) -> bytes:
    """A well-formed PNG header declaring `width` x `height`, with a tiny (insufficient) IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def assert_refused(source, reason: str | set[str], limits: DecodeLimits | None = None, **kwargs):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(source, limits or LIMITS, **kwargs)
    reasons = {reason} if isinstance(reason, str) else reason
    assert caught.value.reason in reasons, str(caught.value)
    label = kwargs.get("name") or str(source)
    assert caught.value.path == label
    assert label in str(caught.value)
    return caught.value


def test_jpeg_is_drafted_to_the_cheapest_scale_covering_target_size(image_file, photo_array):
    path = image_file("big.jpg", photo_array(1600, 1200), quality=90)
    roomy = decode_limits(max_side=4096)
    full = decode_image(path, roomy)
    drafted = decode_image(path, roomy, target_size=256)
    assert full.shape == (1200, 1600, 3)
    assert min(drafted.shape[:2]) >= 256
    # DCT scaling at 1/4, not a resize of the full decode
    assert drafted.shape[0] <= 1200 // 4 and drafted.shape[1] <= 1600 // 4
    assert drafted.dtype == np.uint8


def test_draft_never_goes_below_target_size_and_never_upscales(image_file, photo_array):
    path = image_file("small.jpg", photo_array(300, 200), quality=90)
    assert decode_image(path, LIMITS, target_size=180).shape == (200, 300, 3)
    assert decode_image(path, LIMITS, target_size=1000).shape == (200, 300, 3)


@pytest.mark.parametrize("target_size", [None, 64])
def test_exif_orientation_is_applied(image_file, target_size):
    array = np.zeros((100, 200, 3), dtype=np.uint8)
    array[:, :100] = RED  # left half red, right half blue
    array[:, 100:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90-degree clockwise turn
    path = image_file("rotated.jpg", array, quality=95, exif=exif)
    rgb = decode_image(path, LIMITS, target_size=target_size)
    height, width = rgb.shape[:2]
    assert height == 2 * width  # portrait after rotation
    top, bottom = rgb[: height // 4].reshape(-1, 3).mean(0), rgb[-height // 4 :].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize("target_size", [None, 64])
def test_cmyk_jpeg_becomes_rgb(image_file, target_size):
    path = image_file("cmyk.jpg", Image.new("CMYK", (512, 384), (0, 255, 255, 0)), quality=95)
    rgb = decode_image(path, LIMITS, target_size=target_size)
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
    assert np.abs(rgb.reshape(-1, 3).mean(0) - RED).max() < 10


def test_palette_png_with_transparency(image_file):
    image = Image.new("P", (40, 20), 1)
    image.putpalette([0, 0, 0, *RED, *BLUE] + [0] * (256 - 3) * 3)
    image.paste(2, (20, 0, 40, 20))
    image.info["transparency"] = 0
    image.paste(0, (0, 0, 5, 5))  # a transparent corner
    rgb = decode_image(image_file("palette.png", image, transparency=0), LIMITS)
    assert tuple(rgb[10, 10]) == RED
    assert tuple(rgb[10, 30]) == BLUE
    assert tuple(rgb[2, 2]) == (255, 255, 255)


def test_rgba_png_is_composited_on_white(image_file):
    rgba = np.zeros((10, 30, 4), dtype=np.uint8)
    rgba[:, :10] = (*RED, 255)  # opaque red
    rgba[:, 10:20] = (0, 0, 0, 0)  # fully transparent
    rgba[:, 20:] = (0, 0, 0, 128)  # half-transparent black
    rgb = decode_image(image_file("alpha.png", rgba), LIMITS)
    assert tuple(rgb[5, 5]) == RED
    assert tuple(rgb[5, 15]) == (255, 255, 255)
    assert np.all(np.abs(rgb[5, 25].astype(int) - 127) <= 2)


def test_sixteen_bit_png_is_scaled_to_eight_bits(image_file):
    ramp = np.linspace(0, 65535, 64 * 32).astype(np.uint16).reshape(32, 64)
    path = image_file("deep.png", ramp)
    assert Image.open(path).mode == "I;16"
    rgb = decode_image(path, LIMITS)
    assert rgb.shape == (32, 64, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    assert np.abs(rgb[..., 0].astype(int) - ramp / 257.0).max() <= 1


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_grayscale_becomes_three_equal_channels(image_file, suffix):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))
    rgb = decode_image(
        image_file(f"grey.{suffix}", grey, **({"quality": 95} if suffix == "jpg" else {})), LIMITS
    )
    assert rgb.shape == (16, 64, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    assert np.abs(rgb[..., 0].astype(int) - grey).max() <= 4


def test_animated_gif_gives_first_frame(image_file):
    frames = [Image.new("RGB", (32, 24), colour) for colour in (RED, (0, 255, 0), BLUE)]
    path = image_file("anim.gif", frames[0], save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    rgb = decode_image(path, LIMITS)
    assert rgb.shape == (24, 32, 3)
    assert np.all(rgb == RED)


@pytest.mark.parametrize("width,height", [(100_000, 100_000), (9_000, 9_000)])
def test_declared_huge_png_is_a_decompression_bomb(tmp_path, width, height):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_declared_size(width, height))
    assert_refused(path, "decompression_bomb")


def test_max_pixels_limit_is_checked_on_the_declared_size(image_file, photo_array):
    path = image_file("ok.jpg", photo_array(200, 100), quality=90)
    assert decode_image(path, decode_limits(max_pixels=20_000)).shape == (100, 200, 3)
    assert_refused(path, "decompression_bomb", decode_limits(max_pixels=19_999))


@pytest.mark.parametrize("suffix", ["jpg", "png"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_refused_not_padded(image_file, photo_array, tmp_path, suffix, keep):
    options = {"quality": 90} if suffix == "jpg" else {}
    data = image_file(f"whole.{suffix}", photo_array(256, 192), **options).read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[: int(len(data) * keep)])
    assert_refused(cut, {"truncated", "corrupt"})
    if suffix == "jpg":
        assert_refused(cut, {"truncated", "corrupt"}, target_size=64)


def test_jpeg_cut_inside_its_header_is_truncated(image_file, photo_array, tmp_path):
    data = image_file("whole.jpg", photo_array(256, 192), quality=90).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:300])  # inside the quantisation/Huffman tables
    assert_refused(cut, "truncated")


def test_jpeg_cut_just_before_the_end_is_refused(image_file, photo_array, tmp_path):
    data = image_file("whole.jpg", photo_array(256, 192), quality=90).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:-200])
    assert_refused(cut, {"truncated", "corrupt"})


def test_empty_missing_and_directory(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert_refused(empty, "empty_file")
    assert_refused(tmp_path / "nowhere.jpg", "missing_file")
    assert_refused(tmp_path, "not_a_file")


def test_random_bytes_are_an_unsupported_format(tmp_path):
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_refused(path, "unsupported_format")


def test_oversized_files_and_bytes_are_refused_before_decoding(image_file, photo_array):
    path = image_file("photo.jpg", photo_array(200, 100), quality=90)
    size = path.stat().st_size
    assert decode_image(path, decode_limits(max_bytes=size)).shape == (100, 200, 3)
    assert_refused(path, "too_many_bytes", decode_limits(max_bytes=size - 1))
    assert_refused(path.read_bytes(), "too_many_bytes", decode_limits(max_bytes=size - 1), name="upload-7")


@pytest.mark.parametrize("suffix,size", [("png", (2000, 500)), ("jpg", (600, 1800))])
def test_output_longest_side_is_bounded(image_file, photo_array, suffix, size):
    path = image_file(f"long.{suffix}", photo_array(*size))
    for target_size in (None, 128):
        rgb = decode_image(path, decode_limits(max_side=1024), target_size=target_size)
        assert max(rgb.shape[:2]) <= 1024
    rgb = decode_image(path, decode_limits(max_side=1024))
    assert max(rgb.shape[:2]) == 1024
    assert abs(rgb.shape[1] / rgb.shape[0] - size[0] / size[1]) < 0.02  # aspect ratio kept


def test_bytes_source_decodes_and_errors_carry_the_given_name(image_file, photo_array):
    data = image_file("photo.png", photo_array(40, 30)).read_bytes()
    assert decode_image(data, LIMITS).shape == (30, 40, 3)
    assert_refused(data[:100], {"truncated", "corrupt"}, name="listing-42/photo.png")


def test_decode_error_survives_pickling_for_worker_processes():
    error = ImageDecodeError("/x/y.jpg", "truncated", "image file is truncated")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, copy.detail, str(copy)) == (
        error.path,
        error.reason,
        error.detail,
        str(error),
    )
