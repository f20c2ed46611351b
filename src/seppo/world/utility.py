"""The ground-truth utility u(image, caption) of Shapeland, computed from pixels alone.

u = FIDELITY_WEIGHT * fidelity + (1 - FIDELITY_WEIGHT) * quality, in [0, 1]:
- fidelity: share of the caption's attributes that an analytic detector finds in the image
  (background, count, colour, shape, size and, when the caption names one, position);
- quality: mean of four scores in [0, 1]: sharp edges, clean background (no grain),
  no stray speckles, no object cut by the image border.

It never sees render parameters, so it scores generated images exactly as it scores renders.
It is the embedded world's evaluation reward and is never used by training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .render import RADIUS_AT_32
from .scene import BACKGROUNDS, COLOURS, Scene, parse_caption

FIDELITY_WEIGHT = 0.7
FG_THRESHOLD = 60.0  # RGB distance from the background above which a pixel is foreground
BG_MATCH_MAX = 60.0  # a background farther than this from every palette background is no match
# Shape from fill ratio (area / bounding-box area: triangle 0.5, circle 0.785, square 1) and from
# the offset of the mass centre below the box centre, per unit height (triangle 1/6, others 0).
SQUARE_MIN_FILL = 0.89
CIRCLE_MIN_FILL = 0.65
TRIANGLE_MIN_OFFSET = 0.07
_EIGHT = np.ones((3, 3), dtype=bool)
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_PALETTE_NAMES = list(COLOURS)
_BG = np.array(list(BACKGROUNDS.values()), dtype=np.float32)
_BG_NAMES = list(BACKGROUNDS)


@dataclass(frozen=True)
class Detection:
    """What the detectors read off an image."""

    background: str | None
    count: int
    colours: tuple[str, ...]
    shapes: tuple[str, ...]
    sizes: tuple[str, ...]
    centroid: tuple[float, float] | None  # (x, y) of the objects' mean centre, in pixels
    speckles: int
    edge_width: float  # transitional pixels per boundary pixel; ~0.7 crisp, >2 blurred
    noise: float  # robust std of the background, 0-255 scale
    offcanvas: int  # objects touching the border


@dataclass(frozen=True)
class Utility:
    utility: float
    fidelity: float
    quality: float
    checks: dict[str, bool]
    detection: Detection

    def as_row(self) -> dict:
        row = {"utility": self.utility, "fidelity": self.fidelity, "quality": self.quality}
        row.update({f"ok_{k}": v for k, v in self.checks.items()})
        return row


def _scale(image_size: int) -> float:
    return image_size / 32.0


def detect(img: np.ndarray) -> Detection:
    """Run the analytic detectors on an (H, W, 3) uint8 image."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    x = img.astype(np.float32)
    h, w, _ = x.shape
    s = _scale(w)
    ring = np.concatenate([x[0], x[-1], x[1:-1, 0], x[1:-1, -1]])
    bg_col = np.median(ring, axis=0)
    bg_dist = np.linalg.norm(_BG - bg_col, axis=1)
    background = _BG_NAMES[int(bg_dist.argmin())] if bg_dist.min() <= BG_MATCH_MAX else None

    d_bg = np.linalg.norm(x - bg_col, axis=2)
    fg = d_bg > FG_THRESHOLD
    labels, n = ndimage.label(fg, structure=_EIGHT)
    small_r = RADIUS_AT_32["small"] * s
    large_r = RADIUS_AT_32["large"] * s
    min_area = 0.3 * np.pi * small_r**2
    size_split = (small_r + large_r)  # bbox side between 2*small_r and 2*large_r
    colours, shapes, sizes, centres = [], [], [], []
    speckles = offcanvas = 0
    boundary_total = transitional_total = 0.0
    for idx, sl in enumerate(ndimage.find_objects(labels), start=1):
        comp = labels[sl] == idx
        area = int(comp.sum())
        if area < min_area:
            speckles += 1
            continue
        bh, bw = comp.shape
        ys, xs = np.nonzero(comp)
        centres.append((xs.mean() + sl[1].start + 0.5, ys.mean() + sl[0].start + 0.5))
        if sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w:
            offcanvas += 1
        # Shape and size from a soft mask (sub-pixel accurate on anti-aliased or blurred edges):
        # fill = soft area / soft bounding box; a triangle also carries its mass low.
        pix = x[sl][comp]
        dist = d_bg[sl][comp]
        obj_contrast = float(np.percentile(dist, 90))
        soft = np.clip(d_bg[sl] / max(obj_contrast, 1.0), 0.0, 1.0) * ndimage.binary_dilation(
            comp, structure=_EIGHT
        )
        width = soft.max(axis=0).sum()
        height = soft.max(axis=1).sum()
        fill = soft.sum() / max(width * height, 1e-6)
        rows = np.arange(soft.shape[0]) + 0.5
        row_mass = soft.sum(axis=1)
        row_extent = soft.max(axis=1)
        y_mass = (rows * row_mass).sum() / max(row_mass.sum(), 1e-6)
        y_box = (rows * row_extent).sum() / max(row_extent.sum(), 1e-6)
        y_offset = (y_mass - y_box) / max(height, 1e-6)
        shapes.append(_classify_shape(fill, y_offset))
        sizes.append("small" if max(width, height) < size_split else "large")
        # Colour from the object's core: the half of its pixels farthest from the background.
        core = pix[dist >= np.median(dist)]
        mean = core.mean(axis=0)
        colours.append(_PALETTE_NAMES[int(np.linalg.norm(_PALETTE - mean, axis=1).argmin())])
        # Edge width: pixels between background and object per boundary pixel of the mask.
        pad = tuple(slice(max(a.start - 3, 0), a.stop + 3) for a in sl)
        local_d = d_bg[pad]
        local_mask = labels[pad] == idx
        boundary = local_mask & ~ndimage.binary_erosion(local_mask, structure=_EIGHT)
        near = ndimage.binary_dilation(local_mask, structure=_EIGHT, iterations=3)
        transitional = near & (local_d > 20.0) & (local_d < 0.8 * obj_contrast)
        boundary_total += boundary.sum()
        transitional_total += transitional.sum()
    edge_width = transitional_total / boundary_total if boundary_total else 0.0

    far = ~ndimage.binary_dilation(fg, structure=_EIGHT, iterations=2)
    if far.sum() >= 8:
        bgpix = x[far]
        mad = np.median(np.abs(bgpix - np.median(bgpix, axis=0)), axis=0)
        noise = float(1.4826 * mad.mean())
    else:
        noise = 0.0
    centroid = tuple(np.mean(centres, axis=0).tolist()) if centres else None
    return Detection(
        background=background,
        count=len(centres),
        colours=tuple(colours),
        shapes=tuple(shapes),
        sizes=tuple(sizes),
        centroid=centroid,
        speckles=speckles,
        edge_width=float(edge_width),
        noise=noise,
        offcanvas=offcanvas,
    )


def _classify_shape(fill: float, y_offset: float) -> str:
    if fill < CIRCLE_MIN_FILL or (y_offset > TRIANGLE_MIN_OFFSET and fill < SQUARE_MIN_FILL - 0.1):
        return "triangle"
    return "square" if fill >= SQUARE_MIN_FILL else "circle"


def quality_scores(det: Detection) -> dict[str, float]:
    return {
        "sharp": float(np.clip(1.0 - (det.edge_width - 1.2) / 1.5, 0.0, 1.0)),
        "clean": float(np.clip(1.0 - (det.noise - 2.0) / 12.0, 0.0, 1.0)),
        "speckle_free": float(np.clip(1.0 - det.speckles / 3.0, 0.0, 1.0)),
        "in_frame": 1.0 - det.offcanvas / det.count if det.count else 1.0,
    }


def fidelity_checks(det: Detection, scene: Scene, image_size: int) -> dict[str, bool]:
    found = det.count > 0
    checks = {
        "background": det.background == scene.background,
        "count": det.count == scene.count,
        "colour": found and all(c == scene.colour for c in det.colours),
        "shape": found and all(c == scene.shape for c in det.shapes),
        "size": found and all(c == scene.size for c in det.sizes),
    }
    if scene.position is not None:
        ok = False
        if det.centroid is not None:
            cx, cy = det.centroid
            half = image_size / 2.0
            ok = {"left": cx < half, "right": cx > half, "top": cy < half, "bottom": cy > half}[
                scene.position
            ]
        checks["position"] = ok
    return checks


def utility(img: np.ndarray, caption: str | Scene) -> Utility:
    """u(image, caption) in [0, 1]; see the module docstring."""
    scene = caption if isinstance(caption, Scene) else parse_caption(caption)
    det = detect(img)
    checks = fidelity_checks(det, scene, img.shape[1])
    fidelity = float(np.mean(list(checks.values())))
    quality = float(np.mean(list(quality_scores(det).values())))
    u = FIDELITY_WEIGHT * fidelity + (1.0 - FIDELITY_WEIGHT) * quality
    return Utility(utility=u, fidelity=fidelity, quality=quality, checks=checks, detection=det)


def utilities(images: np.ndarray | list[np.ndarray], captions: list[str]) -> np.ndarray:
    """Batched convenience: the utility of each (image, caption)."""
    return np.array([utility(im, c).utility for im, c in zip(images, captions, strict=True)])


def detection_dict(det: Detection) -> dict:
    return asdict(det)
