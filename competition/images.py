"""Decode any image file into a square RGB array: orientation, colour mode, resize, centre crop.

``load_square_rgb`` is the one decoder the data stage uses. Complete JPEGs (the
bulk of every dataset) are decoded by OpenCV, shrunk on load by DCT scaling when
the image is at least twice the target size; OpenCV applies the EXIF orientation
and converts greyscale and CMYK. Every other file (PNG, GIF, a JPEG that lacks
its end marker, anything OpenCV refuses) goes through Pillow, which reports why a
file is unusable and converts palette, RGBA and 16-bit modes. The result is the
central square (what "shorter side resized to ``size``, then centre-cropped"
keeps), resized with an area filter. An unusable file raises ``ImageRejected``
with a short reason, for ``rejected.csv``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
JPEG_START, JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
IMAGE_SIGNATURES = (JPEG_START, b"\x89PNG", b"GIF8", b"BM")  # files that claim to be images
# OpenCV's shrink-on-load flags, largest reduction first
REDUCED_DECODE_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))

cv2.setNumThreads(1)  # parallelism comes from the caller's worker threads


class ImageRejected(Exception):
    """A file that is not a usable image; the message is the reason."""


def is_image_name(path: Path | str) -> bool:
    """Whether the file name has an image extension (the content is checked on decode)."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def _is_complete_jpeg(data: bytes) -> bool:
    return data.startswith(JPEG_START) and data.rstrip(b"\x00").endswith(JPEG_END)


def _decode_jpeg_opencv(data: bytes, size: int) -> np.ndarray | None:
    """RGB pixels of a complete JPEG with EXIF orientation applied, or None if OpenCV refuses it."""
    with Image.open(io.BytesIO(data)) as header:
        shorter_side = min(header.size)
    flag = next((flag for factor, flag in REDUCED_DECODE_FLAGS if shorter_side // factor >= size), cv2.IMREAD_COLOR)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _decode_pillow(data: bytes, size: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at the smallest scale still >= size
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return np.asarray(image.convert("RGB"))


def _decode(data: bytes, size: int) -> np.ndarray:
    if not data:
        raise ImageRejected("empty file")
    try:
        pixels = _decode_jpeg_opencv(data, size) if _is_complete_jpeg(data) else None
        return pixels if pixels is not None else _decode_pillow(data, size)
    except UnidentifiedImageError:
        if data.startswith(IMAGE_SIGNATURES):
            raise ImageRejected("corrupt: image signature but unreadable header") from None
        raise ImageRejected("not an image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ImageRejected(f"corrupt or truncated: {reason}") from None


def square_resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """The central square of ``pixels`` resized to ``(size, size)``."""
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = pixels[top:top + side, left:left + side]
    interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(square, (size, size), interpolation=interpolation))


def load_square_rgb(path: Path | str, size: int) -> np.ndarray:
    """Decode ``path`` into a ``(size, size, 3)`` uint8 RGB array, or raise ImageRejected."""
    return square_resize(_decode(Path(path).read_bytes(), size), size)


def channel_means(pixels: np.ndarray) -> np.ndarray:
    """Per-channel mean of an ``(H, W, 3)`` image (OpenCV's SIMD sum: 30x faster than numpy's mean)."""
    return np.array(cv2.mean(pixels)[:3])
