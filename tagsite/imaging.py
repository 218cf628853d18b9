"""Decoding images safely and fast: bomb checks, JPEG draft mode, odd modes to RGB, thumbnails."""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112
SWAPPED_ORIENTATIONS = {5, 6, 7, 8}
TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageDecodeError(ValueError):
    """The file is not an image we can decode; the message says why in words a user understands."""


@dataclass
class DecodedImage:
    image: Image.Image  # RGB, EXIF rotation applied, possibly reduced by draft mode
    format: str
    width: int  # full size as displayed
    height: int
    orientation: int
    frames: int
    may_have_keywords: bool  # False only when the format's XMP/IPTC blocks are known to be absent


# Bytes handed to the decoder per call. Pillow's 64 KiB means dozens of calls per photo, each
# retaking the GIL, which stalls decoding threads whenever another thread runs Python.
DECODE_BLOCK = 1 << 24

# Formats whose XMP and IPTC blocks Pillow exposes in `info`; for others ExifTool is always asked.
KEYWORD_INFO_KEYS = {"JPEG": ("xmp", "photoshop"), "PNG": ("xmp", "XML:com.adobe.xmp"), "WEBP": ("xmp",), "GIF": ()}


def open_image(path_or_file, *, max_pixels: int, draft_size: int | None = None) -> DecodedImage:
    """Decode the first frame to RGB on white. `draft_size` lets JPEG decode at a reduced DCT scale."""
    try:
        img = Image.open(path_or_file)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"decompression bomb: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image (unrecognised format)") from exc
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise ImageDecodeError(
                f"decompression bomb: {width}x{height} is {width * height} pixels, over the limit of {max_pixels}"
            )
        if width == 0 or height == 0:
            raise ImageDecodeError("image has no pixels")
        fmt = img.format or ""
        keys = KEYWORD_INFO_KEYS.get(fmt)
        may_have_keywords = keys is None or any(key in img.info for key in keys)
        frames = getattr(img, "n_frames", 1)
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
        if not isinstance(orientation, int) or not 1 <= orientation <= 8:
            orientation = 1
        if draft_size and fmt == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
        img.decodermaxblock = DECODE_BLOCK
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageDecodeError(f"corrupt or truncated image: {exc}") from exc
        rgb = to_rgb(img)
    if orientation in TRANSPOSE_FOR_ORIENTATION:
        rgb = rgb.transpose(TRANSPOSE_FOR_ORIENTATION[orientation])
    if orientation in SWAPPED_ORIENTATIONS:
        width, height = height, width
    return DecodedImage(rgb, fmt, width, height, orientation, frames, may_have_keywords)


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any mode to 8-bit RGB: alpha composited on white, 16-bit and float scaled, CMYK converted."""
    if img.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        array = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def thumbnail_jpeg(img: Image.Image, size: int) -> bytes:
    """A JPEG no larger than `size` on its long side."""
    thumb = img.copy()
    thumb.thumbnail((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
