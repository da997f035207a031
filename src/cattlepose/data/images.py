"""Image loading that always returns 8-bit RGB: grayscale, RGBA, 16-bit and EXIF-rotated files included.

`load_image` decodes (and so finds truncated files); `image_size` reads headers only, which is what readers
use on thousands of files. Both report sizes in the upright frame that EXIF orientation describes, which is
the frame annotators label in.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from cattlepose.core.errors import UserError

# The one list of image file suffixes: what `load_image` decodes (every one is tested), which folder inputs and
# ADK's find-by-stem search. Training readers take any file an annotation names; a folder given to predict
# holds the files listed here, and `scan_folder` names every other entry it leaves out.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp", ".ppm",
     ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".avif"}
)  # fmt: skip
_JPEG_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif"}
_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that makes the image upright (1 and unknown values: none)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def list_images(folder: str | Path) -> list[Path]:
    """The image files of a folder (by suffix), sorted by name."""
    return scan_folder(folder)[0]


def scan_folder(folder: str | Path) -> tuple[list[Path], list[str]]:
    """(the image files of a folder, sorted by name; every other entry, named, with why it is left out).

    Subfolders are not searched, and hidden files (`.DS_Store`, macOS `._photo.jpg` copies) are not images."""
    images, skipped = [], []
    for p in sorted(Path(folder).iterdir()):
        if p.name.startswith("."):
            skipped.append(f"{p.name} (hidden)")
        elif p.is_dir():
            skipped.append(f"{p.name}/ (a subfolder; not searched)")
        elif not p.is_file():
            skipped.append(f"{p.name} (a broken link or not a regular file)")
        elif p.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(f"{p.name} (not an image suffix)")
        else:
            images.append(p)
    return images, skipped


def load_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright as EXIF says. A missing, unreadable or truncated file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError("image file not found", path=path)
    if path.suffix.lower() in _JPEG_SUFFIXES:
        rgb = _decode_jpeg(path)
        if rgb is not None:
            return rgb
    try:
        with Image.open(path) as im:
            im.load()  # decodes fully: a truncated file raises here, not later in a worker
            # only the pixels matter here, so rotate without ImageOps.exif_transpose's copy and metadata
            # rewrite
            upright = _UPRIGHT.get(im.getexif().get(_ORIENTATION, 1))
            return _to_rgb8(im if upright is None else im.transpose(upright))
    except _READ_ERRORS as e:
        raise UserError(f"cannot read image ({e})", path=path) from None


def _decode_jpeg(path: Path) -> np.ndarray | None:
    """A JPEG through OpenCV's libjpeg-turbo: the same pixels as Pillow (tested, EXIF rotation included), faster
    for small images, since Pillow reads in Python-level chunks and copies the result once more through
    `tobytes`. None for what it does not decode the way Pillow does (CMYK, whose conversion
    differs, and any failure, truncation included): the Pillow path then decodes the file or names the
    problem."""
    data = np.fromfile(path, dtype=np.uint8)
    if _jpeg_components(data[:65536].tobytes()) not in (1, 3):
        return None
    try:
        rgb = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB)  # applies EXIF orientation; gray comes back as RGB
    except cv2.error:
        return None
    return None if rgb is None else np.ascontiguousarray(rgb)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_components(head: bytes) -> int | None:
    """Colour components in the JPEG's frame header (1 gray, 3 YCbCr/RGB, 4 CMYK), None if none is found."""
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF:
            return head[i + 9] if i + 9 < len(head) else None
        if marker == 0xDA:  # scan data before any frame header: not a valid file
            return None
        i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) after EXIF rotation, read from the header without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise UserError("image file not found", path=path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.format == "PNG" and "exif" not in im.info:
                # PngImageFile.getexif() decodes the whole image to look for an eXIf chunk after the pixel
                # data; walking the chunk headers finds it at a fraction of the cost.
                orientation = _png_orientation(path)
            else:
                orientation = im.getexif().get(_ORIENTATION, 1)
    except (*_READ_ERRORS, struct.error) as e:
        raise UserError(f"cannot read image ({e})", path=path) from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _png_orientation(path: Path) -> int:
    """EXIF orientation from a PNG's eXIf chunk, seeking over the other chunks (1 when there is none)."""
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return 1
        while True:
            head = f.read(8)
            if len(head) < 8:
                return 1
            length, kind = struct.unpack(">I4s", head)
            if kind == b"eXIf":
                exif = Image.Exif()
                exif.load(f.read(length))
                return int(exif.get(_ORIENTATION, 1))
            if kind == b"IEND":
                return 1
            f.seek(length + 4, 1)  # chunk data + CRC


def _to_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode.startswith("I;16"):
        # 16-bit files span 0..65535 by definition; 65535 / 257 = 255 maps white to white exactly
        a = np.asarray(im, dtype=np.float64)
        return _gray_to_rgb(np.round(a / 257.0))
    if im.mode == "I":
        # 32-bit integer images carry no nominal range: 8-bit data stored wide stays as is, anything larger
        # is taken as 16-bit
        a = np.asarray(im, dtype=np.float64)
        return _gray_to_rgb(a if a.max() <= 255 else np.round(a / 257.0))
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        return _gray_to_rgb(a * 255.0 if a.max() <= 1.0 else a)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        # composite on black: transparent pixels carry no animal
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im)
    return np.ascontiguousarray(np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8))


def _gray_to_rgb(a: np.ndarray) -> np.ndarray:
    g = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
