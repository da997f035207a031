"""Image loading that always returns 8-bit RGB: grayscale, RGBA, 16-bit and EXIF-rotated files included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cattlepose.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def load_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright as EXIF says. A missing, unreadable or truncated file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError("image file not found", path=path)
    try:
        with Image.open(path) as im:
            im.load()  # decodes fully: a truncated file raises here, not later in a worker
            im = ImageOps.exif_transpose(im)
            return _to_rgb8(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot read image ({e})", path=path) from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) after EXIF rotation, read from the header without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise UserError("image file not found", path=path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot read image ({e})", path=path) from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _to_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 else 255.0
        a = np.clip(np.round(a * 255.0 / peak), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # composite on black: transparent pixels carry no animal
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
