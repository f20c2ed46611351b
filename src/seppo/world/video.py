"""Shapeland in time: captioned clips of one scene that changes, and their ground-truth utility.

A clip caption is a Shapeland image caption plus the change it asks for, after a comma:
"two small blue squares on a grey background, moving right", "one small red circle on a white
background, growing", "three large green triangles on a black background, turning yellow".
The caption's attributes describe the first frame (growing starts small, shrinking starts large).

The utility u(clip, caption) in [0, 1] is read off the pixels alone, frame by frame, with the image
world's detectors (`utility.detect`):
- frame fidelity (weight 0.4): per frame, the share of the static attributes found (background, count,
  shape, position when named; the colour when the clip does not change it; the size when it does not
  grow or shrink), averaged over frames;
- change (0.25): the change named in the caption happened between the first and the last frame
  (moved at least half the travel in the named direction, grew / shrank from one size class to the
  other, turned from the first colour to the second);
- temporal consistency (0.15): the share of adjacent frame pairs that agree on count, shapes and
  background and whose objects move by at most a few pixels (no flicker, no jumps);
- quality (0.2): the image world's four quality scores (sharp, clean, no speckles, in frame), averaged
  over frames.
It never sees render parameters, so it scores generated clips exactly as it scores renders, and it is
never used by training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .render import COLOUR_JITTER, GAP_PX_AT_32, SUPERSAMPLE, Defects, InfeasibleScene, _shape_mask, apply_defects
from .render import radius as object_radius
from .scene import BACKGROUNDS, COLOURS, POSITIONS, Scene, parse_caption, random_scene, values_of
from .utility import FG_THRESHOLD, detect, fidelity_checks, quality_scores

MOVES = {"moving left": (-1, 0), "moving right": (1, 0), "moving up": (0, -1), "moving down": (0, 1)}
SIZE_CHANGES = {"growing": ("small", "large"), "shrinking": ("large", "small")}
TURNS = tuple(f"turning {c}" for c in COLOURS)
CHANGES = (*MOVES, *SIZE_CHANGES, *TURNS)
TRAVEL_AT_32 = 10.0  # pixels a moving clip's objects travel from the first frame to the last, at 32 px
COLOUR_MARGIN = 25.0  # a colour change stays this far beyond the detectors' foreground threshold
MAX_STEP_AT_32 = 3.5  # the largest centroid step between adjacent frames that is not a jump, at 32 px
WEIGHTS = {"frame_fidelity": 0.4, "change": 0.25, "consistency": 0.15, "quality": 0.2}


@dataclass(frozen=True)
class ClipScene:
    """What a clip caption asks for: the first frame's scene and the change over the clip."""

    scene: Scene
    change: str

    def __post_init__(self):
        if self.change not in CHANGES:
            raise ValueError(f"unknown change {self.change!r}; one of {', '.join(CHANGES)}")
        if self.change in MOVES and self.scene.position is not None:
            raise ValueError(f"a moving clip names no position (got {self.scene.position!r})")
        if self.change in SIZE_CHANGES and self.scene.size != SIZE_CHANGES[self.change][0]:
            raise ValueError(f"a {self.change} clip starts {SIZE_CHANGES[self.change][0]} (got {self.scene.size})")
        if self.change in TURNS and self.end_colour == self.scene.colour:
            raise ValueError(f"a clip cannot turn {self.scene.colour} from {self.scene.colour}")

    @property
    def end_colour(self) -> str:
        return self.change.split(" ", 1)[1] if self.change in TURNS else self.scene.colour

    @property
    def end_size(self) -> str:
        return SIZE_CHANGES[self.change][1] if self.change in SIZE_CHANGES else self.scene.size

    def caption(self) -> str:
        return f"{self.scene.caption()}, {self.change}"


class ClipCaptionError(ValueError):
    pass


def parse_clip_caption(caption: str) -> ClipScene:
    """The ClipScene of a clip caption; raises ClipCaptionError naming what is missing or wrong."""
    head, sep, change = caption.strip().rpartition(",")
    change = " ".join(change.lower().split())
    if not sep or change not in CHANGES:
        raise ClipCaptionError(f"caption {caption!r} does not end with a change (', <change>'; one of "
                               f"{', '.join(CHANGES)})")
    try:
        return ClipScene(parse_caption(head), change)
    except ValueError as err:
        raise ClipCaptionError(f"caption {caption!r}: {err}") from None


def feasible(clip: ClipScene, image_size: int) -> bool:
    """Whether a clean render of the clip is readable: its objects fit along their whole path (checked with
    a fixed seed), and a colour change never passes within the detectors' reach of the background (a green
    object turning purple on grey fades into the background halfway)."""
    try:
        box, rmax, sep = _path_box(clip, image_size)
    except InfeasibleScene:
        return False
    # feasible = placed within 20 restarts under three seeds; a render then gets 200 restarts
    if any(_place(clip.scene.count, rmax, box, sep, np.random.default_rng(k)) is None for k in range(3)):
        return False
    if clip.change in TURNS:
        c0, c1 = (np.array(COLOURS[c], dtype=np.float32) for c in (clip.scene.colour, clip.end_colour))
        bg = np.array(BACKGROUNDS[clip.scene.background], dtype=np.float32)
        path = c0[None] + np.linspace(0.0, 1.0, 21)[:, None] * (c1 - c0)[None]
        if np.linalg.norm(path - bg, axis=1).min() < FG_THRESHOLD + COLOUR_MARGIN:
            return False
    return True


def random_clip(rng: np.random.Generator, image_size: int = 32) -> ClipScene:
    """A feasible clip scene: a change drawn uniformly, then the scene attributes the change allows."""
    while True:
        change = CHANGES[rng.integers(len(CHANGES))]
        scene = random_scene(rng)
        if change in TURNS and change.split(" ", 1)[1] == scene.colour:
            continue
        clip = _compatible(scene, change)
        if feasible(clip, image_size):
            return clip


@dataclass(frozen=True)
class ClipDefects:
    """What a simulated video generator gets wrong in time, on top of per-frame image defects."""

    frame: Defects = Defects()  # applied to every frame (fresh noise per frame)
    flicker: float = 0.0  # per frame, P(the objects vanish or change colour for that frame)
    jitter_px: float = 0.0  # per-frame random displacement of the objects, pixels at 32 px

    @property
    def temporal_severity(self) -> float:
        """How bad the flicker and shake look, 0 to 1 (true_clip_utility; frame defects count apart)."""
        return min(self.flicker / 0.3, 1.0) * 0.5 + min(self.jitter_px / 3.0, 1.0) * 0.5


def _place(count: int, r: float, box: tuple[float, float, float, float], sep: float,
           rng: np.random.Generator, restarts: int = 20) -> list[tuple[float, float]] | None:
    """Object centres on a half-pixel grid inside ``box``, boxes ``sep`` apart: each object is drawn among
    the candidates still free (as the image world places objects), restarting when one has no room."""
    x0, x1, y0, y1 = box
    if x1 < x0 or y1 < y0:
        return None
    gx, gy = np.arange(x0, x1 + 1e-6, 0.5), np.arange(y0, y1 + 1e-6, 0.5)
    grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    for _ in range(restarts):
        free = np.ones(len(grid), dtype=bool)
        pts: list[tuple[float, float]] = []
        for _ in range(count):
            idx = np.flatnonzero(free)
            if not len(idx):
                break
            x, y = grid[idx[rng.integers(len(idx))]]
            pts.append((float(x), float(y)))
            free &= np.maximum(np.abs(grid[:, 0] - x), np.abs(grid[:, 1] - y)) >= sep
        if len(pts) == count:
            return pts
    return None


def _path_box(clip: ClipScene, image_size: int) -> tuple[tuple[float, float, float, float], float, float]:
    """(box of the first frame's object centres, largest radius, centre separation): the objects at their
    largest fit the named region, and a move's whole path stays inside the image."""
    s = image_size / 32.0
    rmax = max(object_radius(clip.scene.size, image_size), object_radius(clip.end_size, image_size))
    dx, dy = MOVES.get(clip.change, (0, 0))
    travel = TRAVEL_AT_32 * s
    lo, hi, half = rmax + 1.0, image_size - rmax - 1.0, image_size / 2.0
    region = {None: (lo, hi, lo, hi), "left": (lo, half - 2.5, lo, hi), "right": (half + 2.5, hi, lo, hi),
              "top": (lo, hi, lo, half - 2.5), "bottom": (lo, hi, half + 2.5, hi)}
    x0, x1, y0, y1 = region[clip.scene.position]
    # start far enough from the edge the objects move toward
    x0, x1 = x0 - min(dx, 0) * travel, x1 - max(dx, 0) * travel
    y0, y1 = y0 - min(dy, 0) * travel, y1 - max(dy, 0) * travel
    if x1 < x0 or y1 < y0:
        raise InfeasibleScene(f"{clip.caption()!r} does not fit a {image_size}px clip")
    return (x0, x1, y0, y1), rmax, 2 * rmax + GAP_PX_AT_32 * s


def render_clip(clip: ClipScene, image_size: int, frames: int, rng: np.random.Generator,
                defects: ClipDefects = ClipDefects()) -> np.ndarray:
    """(frames, H, W, 3) uint8: the clip's scene changing linearly from the first frame to the last.
    Raises InfeasibleScene if its objects (at their largest, along their whole path) do not fit."""
    if frames < 2:
        raise ValueError(f"a clip has at least 2 frames (got {frames})")
    s = image_size / 32.0
    sc = clip.scene
    r0, r1 = object_radius(sc.size, image_size), object_radius(clip.end_size, image_size)
    dx, dy = MOVES.get(clip.change, (0, 0))
    travel = TRAVEL_AT_32 * s
    box, rmax, sep = _path_box(clip, image_size)
    centres = _place(sc.count, rmax, box, sep, rng, restarts=200)
    if centres is None:
        raise InfeasibleScene(f"{clip.caption()!r} does not fit a {image_size}px clip")
    jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, (sc.count, 3))
    c0 = np.array(COLOURS[sc.colour], dtype=np.float32)
    c1 = np.array(COLOURS[clip.end_colour], dtype=np.float32)
    n = image_size * SUPERSAMPLE
    out = np.empty((frames, image_size, image_size, 3), dtype=np.uint8)
    palette = list(COLOURS.values())
    for t in range(frames):
        f = t / (frames - 1)
        r = (r0 + f * (r1 - r0)) * SUPERSAMPLE
        colour = (1 - f) * c0 + f * c1
        vanish = glitch = False
        if defects.flicker and rng.random() < defects.flicker:
            vanish, glitch = (True, False) if rng.random() < 0.5 else (False, True)
        if glitch:
            colour = np.array(palette[rng.integers(len(palette))], dtype=np.float32)
        shake = rng.normal(0.0, defects.jitter_px * s, 2) if defects.jitter_px else np.zeros(2)
        canvas = np.empty((n, n, 3), dtype=np.float32)
        canvas[:] = BACKGROUNDS[sc.background]
        for i, (cx, cy) in enumerate([] if vanish else centres):
            px = (cx + f * dx * travel + shake[0]) * SUPERSAMPLE
            py = (cy + f * dy * travel + shake[1]) * SUPERSAMPLE
            bx0, bx1 = max(int(px - r) - 1, 0), min(int(px + r) + 2, n)
            by0, by1 = max(int(py - r) - 1, 0), min(int(py + r) + 2, n)
            if bx0 >= bx1 or by0 >= by1:
                continue
            yy, xx = np.mgrid[by0:by1, bx0:bx1] + 0.5
            canvas[by0:by1, bx0:bx1][_shape_mask(sc.shape, px, py, r, yy, xx)] = np.clip(colour + jitter[i], 0, 255)
        img = canvas.reshape(image_size, SUPERSAMPLE, image_size, SUPERSAMPLE, 3).mean(axis=(1, 3))
        out[t] = apply_defects(img, defects.frame, rng)
    return out


@dataclass(frozen=True)
class ClipUtility:
    utility: float
    parts: dict[str, float]  # frame_fidelity, change, consistency, quality

    def as_row(self) -> dict:
        return {"utility": self.utility, **self.parts}


def clip_utility(clip: np.ndarray, caption: str | ClipScene) -> ClipUtility:
    """u(clip, caption) in [0, 1] from the pixels of a (T, H, W, 3) uint8 clip; see the module docstring."""
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] < 2:
        raise ValueError(f"expected a (T >= 2, H, W, 3) clip, got shape {clip.shape}")
    cs = caption if isinstance(caption, ClipScene) else parse_clip_caption(caption)
    size = clip.shape[2]
    s = size / 32.0
    dets = [detect(frame) for frame in clip]
    ignore = {"colour"} if cs.change in TURNS else set()
    ignore |= {"size"} if cs.change in SIZE_CHANGES else set()
    per_frame = []
    for det in dets:
        checks = {k: v for k, v in fidelity_checks(det, cs.scene, size).items() if k not in ignore}
        per_frame.append(np.mean(list(checks.values())))
    first, last = dets[0], dets[-1]
    if cs.change in MOVES:
        dx, dy = MOVES[cs.change]
        ok = first.centroid is not None and last.centroid is not None
        if ok:
            along = (last.centroid[0] - first.centroid[0]) * dx + (last.centroid[1] - first.centroid[1]) * dy
            across = abs((last.centroid[0] - first.centroid[0]) * dy) + abs((last.centroid[1] - first.centroid[1]) * dx)
            ok = along >= 0.5 * TRAVEL_AT_32 * s and across <= 0.5 * TRAVEL_AT_32 * s
    elif cs.change in SIZE_CHANGES:
        a, b = SIZE_CHANGES[cs.change]
        ok = bool(first.sizes) and bool(last.sizes) and set(first.sizes) == {a} and set(last.sizes) == {b}
    else:
        ok = (bool(first.colours) and bool(last.colours) and set(first.colours) == {cs.scene.colour}
              and set(last.colours) == {cs.end_colour})
    steady = []
    for a, b in zip(dets, dets[1:]):
        same = a.count == b.count and sorted(a.shapes) == sorted(b.shapes) and a.background == b.background
        if same and a.centroid is not None and b.centroid is not None:
            same = np.hypot(b.centroid[0] - a.centroid[0], b.centroid[1] - a.centroid[1]) <= MAX_STEP_AT_32 * s
        steady.append(same)
    parts = {"frame_fidelity": float(np.mean(per_frame)), "change": float(ok),
             "consistency": float(np.mean(steady)),
             "quality": float(np.mean([np.mean(list(quality_scores(d).values())) for d in dets]))}
    u = float(sum(WEIGHTS[k] * v for k, v in parts.items()))
    return ClipUtility(u, parts)


def clip_utilities(clips, captions: list[str]) -> np.ndarray:
    return np.array([clip_utility(c, cap).utility for c, cap in zip(clips, captions, strict=True)])


@dataclass(frozen=True)
class ClipGenerator:
    """A simulated text-to-video model: attribute and change errors, temporal and per-frame defects."""

    name: str
    attr_error: float  # per static attribute, P(drawn value differs)
    change_error: float  # P(another change than the caption's, e.g. the opposite direction)
    flicker: float  # P(the clip flickers); a flickering clip glitches 20-40% of its frames
    jitter: float  # P(the objects shake from frame to frame)
    frame_defect: float  # P(the frames carry image defects: noise, blur, speckles)

    def generate(self, clip: ClipScene, image_size: int, frames: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, ClipScene, ClipDefects]:
        """One clip for ``clip``: (frames, the clip actually drawn, its defects)."""
        for _ in range(20):
            shown = self._drawn(clip, rng)
            u = rng.random(3)
            frame = Defects()
            if rng.random() < self.frame_defect:
                frame = Defects(blur_sigma=float(rng.uniform(0.7, 1.4)) if u[0] < 0.5 else 0.0,
                                noise_std=float(rng.uniform(6.0, 20.0)) if u[0] >= 0.5 else 0.0,
                                speckles=int(rng.integers(0, 3)))
            defects = ClipDefects(frame=frame,
                                  flicker=float(rng.uniform(0.2, 0.4)) if u[1] < self.flicker else 0.0,
                                  jitter_px=float(rng.uniform(1.5, 3.0)) if u[2] < self.jitter else 0.0)
            try:
                return render_clip(shown, image_size, frames, rng, defects), shown, defects
            except InfeasibleScene:
                continue
        return render_clip(clip, image_size, frames, rng), clip, ClipDefects()

    def _drawn(self, clip: ClipScene, rng: np.random.Generator) -> ClipScene:
        sc = clip.scene
        for attribute in ("shape", "colour", "count", "background"):
            if rng.random() < self.attr_error:
                options = [v for v in values_of(attribute) if v != getattr(sc, attribute)]
                sc = replace(sc, **{attribute: options[rng.integers(len(options))]})
        if sc.position is not None and rng.random() < self.attr_error:
            options = [p for p in POSITIONS if p is not None and p != sc.position]
            sc = replace(sc, position=options[rng.integers(len(options))])
        change = clip.change
        if rng.random() < self.change_error:
            change = CHANGES[rng.integers(len(CHANGES))]
        try:
            return _compatible(sc, change)
        except ValueError:
            return _compatible(clip.scene, clip.change)


def _compatible(scene: Scene, change: str) -> ClipScene:
    """The closest ClipScene with this change (a move drops the position, a size change sets the start size)."""
    if change in MOVES:
        scene = replace(scene, position=None)
    if change in SIZE_CHANGES:
        scene = replace(scene, size=SIZE_CHANGES[change][0])
    return ClipScene(scene, change)


def clip_skill_generator(skill: float) -> ClipGenerator:
    """Rates interpolate linearly from skill 0 (mostly wrong, mostly flickering) to skill 1 (rarely wrong)."""
    if not 0.0 <= skill <= 1.0:
        raise ValueError(f"generator skill must lie in [0, 1], got {skill}")
    lo, hi = (0.5, 0.7, 0.6, 0.6, 0.7), (0.04, 0.05, 0.05, 0.05, 0.08)
    rates = [a + skill * (b - a) for a, b in zip(lo, hi, strict=True)]
    return ClipGenerator(f"shapeland-video-s{round(100 * skill):03d}", *rates)


def true_clip_utility(asked: ClipScene, shown: ClipScene, defects: ClipDefects) -> float:
    """What the simulated annotator perceives (same weights as the pixel utility)."""
    a, b = asked.scene, shown.scene
    attrs = ["background", "count", "shape"] + (["position"] if a.position is not None else [])
    attrs += [] if asked.change in TURNS else ["colour"]
    attrs += [] if asked.change in SIZE_CHANGES else ["size"]
    fidelity = float(np.mean([getattr(a, k) == getattr(b, k) for k in attrs]))
    change = float(asked.change == shown.change and (asked.change not in TURNS or a.colour == b.colour)
                   and (asked.change not in SIZE_CHANGES or a.size == b.size))
    temporal = 1.0 - defects.temporal_severity
    quality = 1.0 - defects.frame.severity
    return float(WEIGHTS["frame_fidelity"] * fidelity + WEIGHTS["change"] * change
                 + WEIGHTS["consistency"] * temporal + WEIGHTS["quality"] * quality)
