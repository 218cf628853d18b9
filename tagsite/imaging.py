"""Decoding images safely and fast: bomb checks, JPEG draft mode, odd modes to RGB, thumbnails."""

import io
import re
import warnings
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


# Pillow warns between its limit and twice it; open_image's own check refuses those files with the
# configured number in the message, so the warning would only leak to the console. Likewise a
# corrupt EXIF block: its orientation falls back to 1 and the photo is imported.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="PIL.TiffImagePlugin")

# Bytes handed to the decoder per call. Pillow's 64 KiB means dozens of calls per photo, each
# retaking the GIL, which stalls decoding threads whenever another thread runs Python.
DECODE_BLOCK = 1 << 24

# Formats whose XMP and IPTC blocks Pillow exposes in `info`; for others ExifTool is always asked.
KEYWORD_INFO_KEYS = {"JPEG": ("xmp", "photoshop"), "PNG": ("xmp", "XML:com.adobe.xmp"), "WEBP": ("xmp",), "GIF": ()}


def open_image(path_or_file, *, max_pixels: int, draft_size: int | None = None) -> DecodedImage:
    """Decode the first frame to RGB on white. `draft_size` lets JPEG decode at a reduced DCT scale.

    Whatever Pillow raises on this one file (a truncation, a corrupt chunk, a decoder bug) comes
    out as an ImageDecodeError whose message a person can act on, so a caller never fails a batch.
    """
    try:
        return _decode(path_or_file, max_pixels, draft_size)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{pixels.group(1)} pixels, " if pixels else ""
        raise ImageDecodeError(f"decompression bomb: {size}{over_limit(max_pixels)}") from exc
    except Image.UnidentifiedImageError as exc:
        if claimed := claimed_format(path_or_file):
            raise ImageDecodeError(f"damaged or truncated {claimed} file (its header cannot be read)") from exc
        raise ImageDecodeError("not an image (unrecognised format)") from exc
    except MemoryError as exc:
        raise ImageDecodeError("too large to decode in the memory available") from exc
    except OSError as exc:
        if exc.errno is not None:  # the file itself (a path argument) could not be read
            raise ImageDecodeError(f"cannot read the file: {exc.strerror}") from exc
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from exc
    except ValueError as exc:
        if "MAX_TEXT_CHUNK" in str(exc):
            raise ImageDecodeError("decompression bomb: a text chunk expands past the safety limit") from exc
        raise ImageDecodeError(f"corrupt image (the decoder stopped: {exc or 'no reason given'})") from exc
    except Exception as exc:  # noqa: BLE001 - SyntaxError, struct.error, EOFError, IndexError...
        raise ImageDecodeError(f"corrupt image (the decoder stopped: {exc or type(exc).__name__})") from exc


SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}


def claimed_format(path_or_file) -> str:
    """The format a file's first bytes claim, so a damaged PNG is not reported as "not an image"."""
    try:
        if hasattr(path_or_file, "seek"):
            path_or_file.seek(0)
            head = path_or_file.read(12)
        else:
            with open(path_or_file, "rb") as handle:
                head = handle.read(12)
    except (OSError, ValueError):
        return ""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in SIGNATURES.items() if head.startswith(magic)), "")


def over_limit(max_pixels: int) -> str:
    return f"over the limit of {max_pixels} pixels (TAGSITE_MAX_IMAGE_PIXELS)"


# Where a decoded picture's orientation could still be read from (EXIF, XMP's tiff:Orientation): Pillow copies them
# along with every transpose, convert and crop, and ImageOps.exif_transpose would turn the pixels a second time.
ROTATION_INFO_KEYS = ("exif", "xmp", "XML:com.adobe.xmp")


def _decode(path_or_file, max_pixels: int, draft_size: int | None) -> DecodedImage:
    with Image.open(path_or_file) as img:
        width, height = img.size
        if width * height > max_pixels:
            raise ImageDecodeError(
                f"decompression bomb: {width}x{height} is {width * height} pixels, {over_limit(max_pixels)}"
            )
        if width == 0 or height == 0:
            raise ImageDecodeError("image has no pixels")
        fmt = img.format or ""
        keys = KEYWORD_INFO_KEYS.get(fmt)
        may_have_keywords = keys is None or any(key in img.info for key in keys)
        frames = getattr(img, "n_frames", 1)
        if draft_size and fmt == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
        img.decodermaxblock = DECODE_BLOCK
        img.load()
        orientation = exif_orientation(img)
        rgb = to_rgb(img)
    if orientation in TRANSPOSE_FOR_ORIENTATION:
        rgb = rgb.transpose(TRANSPOSE_FOR_ORIENTATION[orientation])
    for key in ROTATION_INFO_KEYS:  # the pixels are upright now: nothing downstream may rotate them again
        rgb.info.pop(key, None)
    if orientation in SWAPPED_ORIENTATIONS:
        width, height = height, width
    return DecodedImage(rgb, fmt, width, height, orientation, frames, may_have_keywords)


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation, 1 when the EXIF block is absent or unreadable: a broken maker note or
    IFD should not cost a photo whose pixels decode fine."""
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises many kinds on malformed blocks
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


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
