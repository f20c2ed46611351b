"""Per-row checks of a preference row: pure functions returning a reason string, or None if fine.

Reasons name the field, so a quarantined row says what was wrong with it. The Great Expectations
suite (`expectations.py`) states the same rules over the row profile these checks produce.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image

VALID_LABELS = (0.0, 0.5, 1.0)


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


def check_caption(caption, max_chars: int) -> str | None:
    if caption is None or (isinstance(caption, float) and math.isnan(caption)):
        return "caption: missing"
    if not isinstance(caption, str):
        return f"caption: not a string ({type(caption).__name__})"
    if "\x00" in caption:
        return "caption: contains a NUL character"
    text = caption.strip()
    if not text:
        return "caption: empty or whitespace only"
    if len(text) > max_chars:
        return f"caption: {len(text)} characters, more than ingest.max_caption_chars={max_chars}"
    return None


def _label(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x


def check_labels(label_0, label_1) -> tuple[str | None, float | None, float | None]:
    """(reason, label_0, label_1); labels must be 1/0/0.5 and sum to 1."""
    l0, l1 = _label(label_0), _label(label_1)
    for name, raw, x in (("label_0", label_0, l0), ("label_1", label_1, l1)):
        if x is None or not math.isfinite(x):
            return f"{name}: not a finite number ({raw!r})", None, None
        if x not in VALID_LABELS:
            return f"{name}: {x:g} not in {{0, 0.5, 1}}", None, None
    if l0 + l1 != 1.0:
        return f"label_0 + label_1 = {l0 + l1:g}, expected 1", None, None
    return None, l0, l1


def inspect_image(data: bytes | None, field: str, policy: ImagePolicy) -> tuple[ImageInfo, str | None]:
    """Header checks (format, mode, size) before the full decode, so a huge image is never decoded."""
    if data is None:
        return ImageInfo(0), f"{field}: missing image"
    info = ImageInfo(len(data))
    if not data:
        return info, f"{field}: zero-byte image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        return info, f"{field}: image too large to open safely ({err})"
    except Exception as err:  # noqa: BLE001 - PIL raises many types for garbage
        return info, f"{field}: not a decodable image ({type(err).__name__}: {err})"
    info.format, info.mode = img.format, img.mode
    info.width, info.height = img.size
    if max(img.size) > policy.max_side:
        return info, f"{field}: {img.width}x{img.height} px, a side above ingest.max_side={policy.max_side}"
    if min(img.size) < policy.min_side:
        return info, f"{field}: {img.width}x{img.height} px, a side below ingest.min_side={policy.min_side}"
    try:
        img.load()
    except Exception as err:  # noqa: BLE001 - truncated or corrupt data
        return info, f"{field}: cannot decode {img.format} data ({type(err).__name__}: {err})"
    info.decodable = True
    if img.format not in policy.formats:
        return info, f"{field}: format {img.format}, allowed {list(policy.formats)}"
    if img.mode not in policy.modes:
        return info, f"{field}: mode {img.mode}, allowed {list(policy.modes)}"
    return info, None
