"""Per-row checks of a preference row: pure functions returning a reason string, or None if fine.

Every reason reads `<field>: <what is wrong>`, optionally followed by ` (<row-specific detail>)`;
the part before the detail is the reason's key, stable across rows and runs (it groups the
counts, so it never holds a size, a position or an exception text). The Great Expectations suite
(`expectations.py`) states the same rules over the row profile these checks produce.
"""

from __future__ import annotations

import io
import math
import unicodedata
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .sources import BadValue, clean_error

VALID_LABELS = (0.0, 0.5, 1.0)
INT64 = (-(2**63), 2**63 - 1)
# Formatting characters that render as nothing; a caption made only of them (and spaces) is empty
_INVISIBLE_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}  # fillers, braille blank
# Bidi embeddings, overrides and isolates reorder the text that follows them (Trojan Source)
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_TEXT_CONTROLS = {"\t", "\n", "\r"}
_TRUE, _FALSE = {"true", "1"}, {"false", "0"}
# Kept byte for byte when RGB and upright (every reader opens them); every other accepted image is
# converted and re-encoded as an RGB PNG
KEPT_AS_IS = ("JPEG", "MPO", "PNG")


@dataclass(frozen=True)
class ImagePolicy:
    min_side: int
    max_side: int
    formats: tuple[str, ...]
    modes: tuple[str, ...]


@dataclass
class ImageInfo:
    n_bytes: int
    format: str | None = None
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    decodable: bool = False
    conversion: str | None = None  # e.g. "PNG RGBA->RGB", "JPEG exif-orientation-6"
    data: bytes | None = None  # the bytes to keep: the source's, or a PNG of the RGB conversion


def short(value, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def bad_value_reason(field: str, value) -> str | None:
    return f"{field}: {value.reason}" if isinstance(value, BadValue) else None


def check_caption(caption, max_chars: int) -> str | None:
    if caption is None or (isinstance(caption, float) and math.isnan(caption)):
        return "caption: missing"
    if not isinstance(caption, str):
        return f"caption: not a string ({type(caption).__name__})"
    if "\x00" in caption:
        return "caption: contains a NUL character"
    try:
        caption.encode("utf-8")
    except UnicodeEncodeError:
        return "caption: not encodable as UTF-8 (a lone surrogate)"
    text = caption.strip()
    if not text:
        return "caption: empty or whitespace only"
    for ch in text:
        if ch in _BIDI_CONTROLS:
            return f"caption: contains a bidirectional control character (U+{ord(ch):04X})"
        if unicodedata.category(ch) == "Cc" and ch not in _TEXT_CONTROLS:
            return f"caption: contains a control character (U+{ord(ch):04X})"
    if not any(unicodedata.category(ch)[0] not in "CZ" and ch not in _INVISIBLE_LETTERS for ch in text):
        return "caption: no visible character (only spaces, zero-width or formatting characters)"
    if len(text) > max_chars:
        return f"caption: longer than ingest.max_caption_chars={max_chars} ({len(text)} characters)"
    return None


def check_bool(value, field: str) -> tuple[str | None, bool | None]:
    """A flag stored as a bool, 0/1 or the strings true/false/1/0 (any case); anything else is bad.

    bool("False") is True: a string flag must be parsed, never truth-tested."""
    if isinstance(value, BadValue):
        return f"{field}: {value.reason}", None
    if isinstance(value, (bool, np.bool_)):
        return None, bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return None, bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return None, value.strip().lower() in _TRUE
    if value is None:
        return f"{field}: missing", None
    return f"{field}: not a boolean ({short(value)})", None


def check_ranking_id(value) -> tuple[str | None, int | None]:
    """An integer that fits int64 (an integral float or a digit string is accepted)."""
    if isinstance(value, BadValue):
        return f"ranking_id: {value.reason}", None
    x = None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        x = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        x = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        x = int(value.strip())
    if value is None:
        return "ranking_id: missing", None
    if x is None or not INT64[0] <= x <= INT64[1]:
        return f"ranking_id: not an integer within int64 ({short(value)})", None
    return None, x


def _label(value) -> float | None:
    if isinstance(value, (bool, BadValue)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def check_labels(label_0, label_1) -> tuple[str | None, float | None, float | None]:
    """(reason, label_0, label_1); labels must be 1/0/0.5 and sum to 1."""
    l0, l1 = _label(label_0), _label(label_1)
    for name, raw, x in (("label_0", label_0, l0), ("label_1", label_1, l1)):
        if x is None or not math.isfinite(x):
            return f"{name}: not a finite number ({short(raw)})", None, None
        if x not in VALID_LABELS:
            return f"{name}: not in {{0, 0.5, 1}} ({x:g})", None, None
    if l0 + l1 != 1.0:
        return f"label_0 + label_1: not 1 ({l0 + l1:g})", None, None
    return None, l0, l1


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB pixels of any common mode: transparency composited over white, 16-bit scaled to 8."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.int64)
        scale = 257 if img.mode.startswith("I;16") else max(1, int(arr.max()) // 255 + 1)
        img = Image.fromarray(np.clip(arr // scale, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def inspect_image(data: bytes | None, field: str, policy: ImagePolicy) -> tuple[ImageInfo, str | None]:
    """Check an image and make it RGB and upright.

    Header checks (format, mode, size) come before the full decode, so a huge image is never
    decoded. An upright RGB JPEG or PNG keeps its exact bytes; any other decodable image of an
    allowed format and mode is converted (EXIF orientation applied, RGB) and re-encoded as a
    lossless PNG (so every kept image is an RGB JPEG or PNG), and `info.conversion` says what was
    done, e.g. "PNG RGBA->RGB", "WEBP RGB->RGB" or "JPEG RGB->RGB exif-orientation-6"."""
    if data is None:
        return ImageInfo(0), f"{field}: missing image"
    info = ImageInfo(len(data))
    if not data:
        return info, f"{field}: zero-byte image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return info, f"{field}: image too large to open safely ({clean_error(err)})"
    except UnidentifiedImageError:  # its message holds the buffer's memory address
        return info, f"{field}: not a decodable image (no image format recognised)"
    except Exception as err:  # noqa: BLE001 - PIL raises many types for garbage
        return info, f"{field}: not a decodable image ({clean_error(err)})"
    info.format, info.mode = img.format, img.mode
    info.width, info.height = img.size
    if max(img.size) > policy.max_side:
        return info, f"{field}: a side above ingest.max_side={policy.max_side} ({img.width}x{img.height} px)"
    if min(img.size) < policy.min_side:
        return info, f"{field}: a side below ingest.min_side={policy.min_side} ({img.width}x{img.height} px)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": the pixels are what count
            img.load()
    except Exception as err:  # noqa: BLE001 - truncated or corrupt data
        return info, f"{field}: cannot decode {img.format} data ({clean_error(err)})"
    info.decodable = True
    if img.format not in policy.formats:
        return info, f"{field}: format {img.format} not in ingest.allowed_formats"
    if img.mode not in policy.modes:
        return info, f"{field}: mode {img.mode} not in ingest.allowed_modes"
    try:
        orientation = int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - unreadable EXIF: no rotation to apply
        orientation = 1
    orientation = orientation if 2 <= orientation <= 8 else 1
    if img.mode == "RGB" and orientation == 1 and img.format in KEPT_AS_IS:
        info.data = data
        return info, None
    try:
        out = _to_rgb(ImageOps.exif_transpose(img) if orientation != 1 else img)
        buf = io.BytesIO()
        out.save(buf, format="PNG", compress_level=1)  # fast; still lossless
    except Exception as err:  # noqa: BLE001
        return info, f"{field}: cannot convert {img.format} {img.mode} to RGB ({clean_error(err)})"
    info.width, info.height = out.size
    info.conversion = f"{img.format} {img.mode}->RGB" + (f" exif-orientation-{orientation}" if orientation != 1 else "")
    info.data = buf.getvalue()
    return info, None
