"""Decoding photos into validated 8-bit RGB, once per content hash.

Real buckets hold every kind of image: EXIF-rotated phone photos, grayscale,
palette and transparent PNGs, CMYK and 16-bit files, truncated uploads and
decompression bombs. Each either becomes a plain RGB picture or a clear reason.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_PIXEL_LIMIT = 40_000_000
WHITE = (255, 255, 255)


class DecodeError(ValueError):
    """Why an object is not a usable image."""


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image
    original_mode: str
    media_type: str

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def decode_image(data: bytes, pixel_limit: int = DEFAULT_PIXEL_LIMIT) -> DecodedImage:
    """An upright 8-bit RGB image from encoded bytes, or DecodeError with the reason."""
    if not data:
        raise DecodeError("empty object (0 bytes)")
    try:
        with warnings.catch_warnings():
            # our own pixel limit below decides; PIL's warning would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb guard: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError("not an image: bytes match no known image format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"unreadable image header: {exc}") from exc
    media_type = Image.MIME.get(image.format or "", "application/octet-stream")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise DecodeError(f"zero-size image ({width}x{height})")
    if width * height > pixel_limit:
        raise DecodeError(
            f"decompression bomb guard: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {pixel_limit}"
        )
    original_mode = image.mode
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"corrupt or truncated image data: {exc}") from exc
    return DecodedImage(to_rgb8(upright), original_mode, media_type)


def to_rgb8(image: Image.Image) -> Image.Image:
    """8-bit RGB: alpha composited on white, palettes expanded, 16-bit scaled down."""
    if image.mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")  # a colour-key transparent PNG goes on white too
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return sixteen_bit_to_rgb(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def sixteen_bit_to_rgb(image: Image.Image) -> Image.Image:
    """Scale a high-bit-depth grayscale image to 0..255 by its type's full range."""
    pixels = np.asarray(image)
    if pixels.dtype.kind == "f":
        scaled = np.clip(pixels, 0.0, 1.0) * 255.0
    else:
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max(initial=0) > 255 else 255.0
        scaled = np.clip(pixels.astype(np.float64), 0, top) * (255.0 / top)
    gray = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    return gray.convert("RGB")
