"""Rendering a Shapeland scene to pixels, with the defects that simulated generators make.

Objects are drawn on a 4x supersampled canvas and box-filtered down, so clean renders have
anti-aliased edges like a real image; defects are applied at the output resolution.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from .scene import BACKGROUNDS, COLOURS, Scene

SUPERSAMPLE = 4
# Object half-extent in pixels at 32 px; every shape fills a 2r x 2r box.
RADIUS_AT_32 = {"small": 4.0, "large": 6.5}
GAP_PX_AT_32 = 2.0
COLOUR_JITTER = 12
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_COLOURS_F32 = {k: np.array(v, dtype=np.float32) for k, v in COLOURS.items()}
_BACKGROUNDS_F32 = {k: np.array(v, dtype=np.float32) for k, v in BACKGROUNDS.items()}
for _a in (_PALETTE, *_COLOURS_F32.values(), *_BACKGROUNDS_F32.values()):
    _a.flags.writeable = False


@dataclass(frozen=True)
class Defects:
    """Image-quality defects, all zero/False for a clean render."""

    blur_sigma: float = 0.0  # Gaussian blur, pixels
    noise_std: float = 0.0  # additive Gaussian noise, 0-255 scale
    speckles: int = 0  # stray 1-2 px dots of palette colours
    bleed_px: int = 0  # red channel shifted right: colour fringes
    offcanvas: bool = False  # one object pushed across the image border
    jpeg_quality: int | None = None  # lossy re-encode at this quality

    @property
    def severity(self) -> float:
        """How bad the defects look, 0 (clean) to 1, as a human annotator would judge them."""
        parts = [
            min(self.blur_sigma / 1.5, 1.0),
            min(self.noise_std / 25.0, 1.0),
            min(self.speckles / 4.0, 1.0),
            min(self.bleed_px / 2.0, 1.0),
            1.0 if self.offcanvas else 0.0,
            0.0 if self.jpeg_quality is None else min((60 - self.jpeg_quality) / 50.0, 1.0),
        ]
        return float(np.clip(sum(parts) / 2.0, 0.0, 1.0))


class InfeasibleScene(ValueError):
    """The scene's objects do not fit the requested region at this image size."""


def radius(size: str, image_size: int) -> float:
    return RADIUS_AT_32[size] * image_size / 32.0


@functools.lru_cache(maxsize=256)
def _grid(xr: tuple[float, float], yr: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The candidate centres' x and y (row-major over y, then x, as a meshgrid), read-only: the same
    few regions recur for every render, so they are built once."""
    gx = np.arange(xr[0], xr[1] + 1e-6, 0.5)
    gy = np.arange(yr[0], yr[1] + 1e-6, 0.5)
    mx, my = np.meshgrid(gx, gy)
    out = mx.reshape(-1), my.reshape(-1)
    for a in out:
        a.flags.writeable = False
    return out


def place_objects(
    scene: Scene, image_size: int, rng: np.random.Generator, offcanvas: bool = False, tries: int = 40
) -> list[tuple[float, float]]:
    """Object centres (x, y) inside the region the position names, bounding boxes >= gap apart."""
    r = radius(scene.size, image_size)
    w = float(image_size)
    lo, hi = r + 1.0, w - r - 1.0
    half = w / 2.0
    xr, yr = (lo, hi), (lo, hi)
    if scene.position == "left":
        xr = (lo, half - 2.5)
    elif scene.position == "right":
        xr = (half + 2.5, hi)
    elif scene.position == "top":
        yr = (lo, half - 2.5)
    elif scene.position == "bottom":
        yr = (half + 2.5, hi)
    sep = 2 * r + GAP_PX_AT_32 * image_size / 32.0
    # Candidate centres on a half-pixel grid; each object is drawn among those still free, so a
    # scene that fits is placed within a few restarts.
    grid_x, grid_y = _grid(xr, yr)
    for _ in range(tries):
        free_x, free_y = grid_x, grid_y
        centres: list[tuple[float, float]] = []
        for _ in range(scene.count):
            if len(free_x) == 0:
                break
            k = rng.integers(len(free_x))
            cx, cy = free_x[k], free_y[k]
            centres.append((float(cx), float(cy)))
            # max(|dx|, |dy|) >= sep, one coordinate at a time (same test, fewer temporaries)
            keep = np.abs(free_x - cx) >= sep
            keep |= np.abs(free_y - cy) >= sep
            free_x, free_y = free_x[keep], free_y[keep]
        if len(centres) == scene.count:
            if offcanvas:
                # Push one object so that about half of it lies outside the canvas.
                i = int(rng.integers(len(centres)))
                x, y = centres[i]
                edge = int(rng.integers(4))
                x = [0.0, w, x, x][edge] if edge < 2 else x
                y = [y, y, 0.0, w][edge] if edge >= 2 else y
                centres[i] = (x + rng.uniform(-0.2, 0.2) * r, y + rng.uniform(-0.2, 0.2) * r)
            return centres
    raise InfeasibleScene(f"{scene.caption()!r} does not fit a {image_size}px image")


def _shape_mask(shape: str, cx: float, cy: float, r: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean mask on pixel-centre coordinates ``yy``, ``xx`` (already supersampled)."""
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    if shape == "triangle":
        # Apex up; base 2r wide at the bottom, height 2r.
        t = (yy - (cy - r)) / (2 * r)
        return (t >= 0) & (t <= 1) & (np.abs(xx - cx) <= r * t)
    raise ValueError(f"unknown shape {shape!r}")


def render(
    scene: Scene,
    image_size: int,
    rng: np.random.Generator,
    defects: Defects = Defects(),
) -> np.ndarray:
    """Render ``scene`` as an (H, W, 3) uint8 array. Raises InfeasibleScene if it does not fit."""
    centres = place_objects(scene, image_size, rng, offcanvas=defects.offcanvas)
    s = SUPERSAMPLE
    n = image_size * s
    background = _BACKGROUNDS_F32[scene.background]
    r = radius(scene.size, image_size) * s
    base = _COLOURS_F32[scene.colour]
    objects = []
    for cx, cy in centres:
        colour = np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255)
        # Draw only inside the object's bounding box (clipped to the canvas).
        x0, x1 = max(int(cx * s - r) - 1, 0), min(int(cx * s + r) + 2, n)
        y0, y1 = max(int(cy * s - r) - 1, 0), min(int(cy * s + r) + 2, n)
        if x0 >= x1 or y0 >= y1:
            continue
        objects.append((cx, cy, colour, x0, x1, y0, y1))
    img = np.empty((image_size, image_size, 3), dtype=np.float32)
    img[:] = background
    if objects:
        # The supersampled canvas only where objects are drawn, widened to whole output pixels:
        # an output pixel outside it is all background, whose box-filter mean is the background.
        by0 = min(o[5] for o in objects) // s * s
        by1 = -(-max(o[6] for o in objects) // s) * s
        bx0 = min(o[3] for o in objects) // s * s
        bx1 = -(-max(o[4] for o in objects) // s) * s
        canvas = np.empty((by1 - by0, bx1 - bx0, 3), dtype=np.float32)
        canvas[:] = background
        for cx, cy, colour, x0, x1, y0, y1 in objects:
            # pixel centres as a column and a row: broadcasting gives the same values as np.mgrid
            yy = (np.arange(y0, y1) + 0.5)[:, None]
            xx = (np.arange(x0, x1) + 0.5)[None, :]
            mask = _shape_mask(scene.shape, cx * s, cy * s, r, yy, xx)
            canvas[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0][mask] = colour
        img[by0 // s : by1 // s, bx0 // s : bx1 // s] = _box_filter(canvas)
    return apply_defects(img, defects, rng)


def _box_filter(canvas: np.ndarray) -> np.ndarray:
    """The mean of each SUPERSAMPLE x SUPERSAMPLE block, float32.

    Every canvas value is an integer in [0, 255] (palette colours plus integer jitter), so each
    block's sum is exact in float32 in any order and the division by a power of two is exact: the
    result is bit for bit that of ``canvas.reshape(h, S, w, S, 3).mean(axis=(1, 3))``, with strided
    adds in place of the slower two-axis reduction."""
    s = SUPERSAMPLE
    rows = canvas[0::s].copy()
    for i in range(1, s):
        rows += canvas[i::s]
    out = rows[:, 0::s].copy()
    for j in range(1, s):
        out += rows[:, j::s]
    out /= np.float32(s * s)
    return out


def apply_defects(img: np.ndarray, defects: Defects, rng: np.random.Generator) -> np.ndarray:
    img = img.astype(np.float32, copy=True)
    h, w, _ = img.shape
    if defects.bleed_px:
        img[:, :, 0] = np.roll(img[:, :, 0], defects.bleed_px, axis=1)
        img[:, : defects.bleed_px, 0] = img[:, defects.bleed_px : defects.bleed_px + 1, 0]
    if defects.blur_sigma > 0:
        img = ndimage.gaussian_filter(img, sigma=(defects.blur_sigma, defects.blur_sigma, 0))
    palette = _PALETTE
    for _ in range(defects.speckles):
        y, x = int(rng.integers(h - 1)), int(rng.integers(w - 1))
        k = int(rng.integers(1, 3))
        img[y : y + k, x : x + k] = palette[rng.integers(len(palette))]
    if defects.noise_std > 0:
        img = img + rng.normal(0.0, defects.noise_std, img.shape).astype(np.float32)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if defects.jpeg_quality is not None:
        out = decode_image(encode_jpeg(out, defects.jpeg_quality))
    return out


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 image; deterministic for the same pixels and quality."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))
