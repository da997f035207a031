"""Every image a data set may hold loads as upright 8-bit RGB, and sizes come from headers alone."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cattlepose.core.errors import UserError
from cattlepose.data.formats import adk
from cattlepose.data.images import IMAGE_SUFFIXES, _decode_jpeg, image_size, load_image, scan_folder

RED = (255, 0, 0)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def test_grayscale_loads_as_three_equal_channels(tmp_path):
    a = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (8, 1))
    Image.fromarray(a, "L").save(tmp_path / "g.png")
    rgb = load_image(tmp_path / "g.png")
    assert rgb.shape == (8, 25, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], a) and np.array_equal(rgb[..., 1], a) and np.array_equal(rgb[..., 2], a)


def test_rgba_composites_transparent_pixels_on_black(tmp_path):
    a = np.zeros((6, 6, 4), np.uint8)
    a[..., :3] = (10, 200, 30)
    a[:, :3, 3] = 255  # left half opaque, right half fully transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    rgb = load_image(tmp_path / "a.png")
    assert rgb.shape == (6, 6, 3)
    assert (rgb[:, :3] == (10, 200, 30)).all()
    assert (rgb[:, 3:] == 0).all()


def test_palette_with_transparency_loads_as_rgb(tmp_path):
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    assert (load_image(tmp_path / "p.png") == (200, 100, 50)).all()


def test_16_bit_grayscale_is_scaled_to_8_bit(tmp_path):
    a = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I;16")  # really a 16-bit file
    rgb = load_image(tmp_path / "g16.png")
    assert rgb.dtype == np.uint8
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_16_bit_rgb_png_loads_as_8_bit_rgb(tmp_path):
    import cv2

    bgr16 = np.zeros((2, 2, 3), np.uint16)
    bgr16[..., 2] = 65535  # red in OpenCV's BGR order
    bgr16[..., 1] = 32896
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    rgb = load_image(tmp_path / "c16.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [255, 128, 0]


def _rotated_jpeg(path: Path) -> None:
    """Stored 60 wide x 40 high with a red block at the stored top-left; EXIF 6 = display rotated 90° clockwise,
    so upright the image is 40 x 60 and the block sits at the top-right."""
    a = np.full((40, 60, 3), 255, np.uint8)
    a[:10, :10] = RED
    Image.fromarray(a).save(path, quality=95, exif=_exif(6))


def test_exif_orientation_6_rotates_pixels_and_size(tmp_path):
    _rotated_jpeg(tmp_path / "r.jpg")
    assert image_size(tmp_path / "r.jpg") == (40, 60)
    rgb = load_image(tmp_path / "r.jpg")
    assert rgb.shape == (60, 40, 3)
    assert rgb[4, 35].tolist() == pytest.approx(RED, abs=40)  # top-right upright
    assert rgb[4, 4].min() > 200  # top-left upright is white


def _pillow_reference(path: Path) -> np.ndarray:
    from PIL import ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillows_exif_transpose(tmp_path, orientation, suffix):
    # JPEGs take the libjpeg-turbo fast path, PNGs Pillow's: both must give Pillow's upright pixels exactly
    a = np.random.default_rng(orientation).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    path = tmp_path / f"o{orientation}{suffix}"
    Image.fromarray(a).save(path, exif=_exif(orientation))
    got = load_image(path)
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    assert np.array_equal(got, _pillow_reference(path))
    assert image_size(path) == (got.shape[1], got.shape[0])


@pytest.mark.parametrize("kind", ["rgb", "progressive", "gray", "cmyk", "444", "png-named-jpg"])
def test_jpeg_fast_path_gives_pillows_pixels(tmp_path, kind):
    rgb = Image.fromarray(np.random.default_rng(5).integers(0, 256, (41, 67, 3), dtype=np.uint8))
    path = tmp_path / "x.jpg"
    if kind == "gray":
        rgb.convert("L").save(path)
    elif kind == "cmyk":  # four channels: left to Pillow, which converts CMYK its own way
        rgb.convert("CMYK").save(path)
    elif kind == "png-named-jpg":
        rgb.save(path, format="PNG")
    else:
        rgb.save(path, progressive=kind == "progressive", subsampling=0 if kind == "444" else -1)
    got = load_image(path)
    assert got.shape == (41, 67, 3)
    assert np.array_equal(got, _pillow_reference(path))
    fast = _decode_jpeg(path)  # the fast path takes what it decodes alike and only that
    assert (fast is None) == (kind in ("cmyk", "png-named-jpg"))


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.99])
def test_truncated_jpeg_is_named_whichever_decoder_reads_it(tmp_path, keep):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(UserError, match="cannot read image") as e:
        load_image(path)
    assert "cut.jpg" in str(e.value)


def test_keypoints_of_an_exif_rotated_image_are_in_the_upright_frame(tmp_path):
    root = tmp_path / "adk"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    _rotated_jpeg(root / "images" / "cow.jpg")
    kps = [35, 4, 2] + [20, 30, 2] * 16  # the first keypoint on the red block, in upright pixels
    doc = {"label_info": {"image": {"file_name": "cow.jpg", "width": 60, "height": 40},  # stored size: ignored
                          "annotations": [{"bbox": [0, 0, 40, 60], "keypoints": kps, "category_id": 1}]}}  # fmt: skip
    (root / "annotations" / "cow.json").write_text(json.dumps(doc))
    (s,) = adk.read(root, 17)
    assert (s.width, s.height) == (40, 60)
    x, y = s.keypoints[0, :2].astype(int)
    assert load_image(s.image)[y, x].tolist() == pytest.approx(RED, abs=40)


def _png_with_late_exif(path: Path, orientation: int) -> None:
    """A PNG whose eXIf chunk comes after the pixel data (allowed by the spec), which PIL only sees on load."""
    Image.new("RGB", (30, 10), (0, 0, 255)).save(path)
    data = path.read_bytes()
    iend = data.rindex(b"IEND") - 4
    payload = _exif(orientation)
    payload = payload[6:] if payload.startswith(b"Exif\x00\x00") else payload
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + payload) & 0xFFFFFFFF)
    path.write_bytes(data[:iend] + chunk + data[iend:])


def test_png_size_with_late_exif_matches_the_decoded_image(tmp_path):
    _png_with_late_exif(tmp_path / "late.png", 6)
    with Image.open(tmp_path / "late.png") as im:
        assert "exif" not in im.info  # the header alone does not reveal it
    assert image_size(tmp_path / "late.png") == (10, 30)
    assert load_image(tmp_path / "late.png").shape == (30, 10, 3)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_image_has_a_header_size_but_fails_to_decode(tmp_path, suffix):
    rng = np.random.default_rng(0)
    path = tmp_path / f"t{suffix}"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert image_size(path) == (64, 64)  # readers only read headers: fast, and blind to this
    with pytest.raises(UserError) as e:
        load_image(path)
    assert e.value.path == str(path)
    assert "cannot read image" in str(e.value)


def test_missing_and_non_image_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(UserError, match="not found"):
        image_size(tmp_path / "nope.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    for fn in (load_image, image_size):
        with pytest.raises(UserError) as e:
            fn(tmp_path / "text.jpg")
        assert "text.jpg" in str(e.value)


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES))
def test_every_listed_suffix_loads_and_is_listed_in_a_folder(tmp_path, suffix):
    """The one suffix list: each file it names decodes to the right size and colour, and a folder lists it."""
    fmt = Image.registered_extensions()[suffix]
    path = tmp_path / f"cow{suffix}"
    Image.new("RGB", (12, 8), (200, 40, 40)).save(path, format=fmt)
    rgb = load_image(path)
    assert rgb.shape == (8, 12, 3) and rgb.dtype == np.uint8
    if suffix != ".pbm":  # one bit per pixel: colour is not kept
        assert np.abs(rgb.astype(int).mean(axis=(0, 1)) - (200, 40, 40)).max() < 12, suffix
    assert image_size(path) == (12, 8)
    assert scan_folder(tmp_path) == ([path], [])


def test_a_folder_scan_names_every_entry_it_leaves_out(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.JPG", format="JPEG")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "._a.JPG").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork copied along
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    images, skipped = scan_folder(tmp_path)
    assert images == [tmp_path / "a.JPG"]
    assert skipped == ["._a.JPG (hidden)", "gone.jpg (a broken link or not a regular file)",
                       "notes.txt (not an image suffix)", "sub/ (a subfolder; not searched)"]  # fmt: skip
