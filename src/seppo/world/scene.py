"""The attributes of a Shapeland scene, its caption, and parsing a caption back to attributes."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 230),
    "yellow": (240, 210, 20),
    "purple": (150, 50, 200),
    "cyan": (30, 200, 220),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "grey": (128, 128, 128),
}
COUNTS = (1, 2, 3)
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
SIZES = ("small", "large")
# None: the caption says nothing about where the objects are.
POSITIONS = (None, "left", "right", "top", "bottom")
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
ATTRIBUTES = ("shape", "colour", "count", "size", "position", "background")


@dataclass(frozen=True)
class Scene:
    """What a caption asks for. ``position`` None means anywhere."""

    shape: str
    colour: str
    count: int
    size: str
    position: str | None
    background: str

    def caption(self) -> str:
        noun = self.shape if self.count == 1 else self.shape + "s"
        parts = [COUNT_WORDS[self.count], self.size, self.colour, noun]
        if self.position is not None:
            parts.append(POSITION_PHRASES[self.position])
        parts.append(f"on a {self.background} background")
        return " ".join(parts)

    def with_value(self, attribute: str, value: object) -> "Scene":
        return replace(self, **{attribute: value})


def values_of(attribute: str) -> tuple:
    return {
        "shape": SHAPES,
        "colour": tuple(COLOURS),
        "count": COUNTS,
        "size": SIZES,
        "position": POSITIONS,
        "background": tuple(BACKGROUNDS),
    }[attribute]


def random_scene(rng: np.random.Generator) -> Scene:
    """Draw a scene uniformly over attribute values (feasibility is checked by the renderer)."""
    return Scene(
        shape=SHAPES[rng.integers(len(SHAPES))],
        colour=list(COLOURS)[rng.integers(len(COLOURS))],
        count=int(COUNTS[rng.integers(len(COUNTS))]),
        size=SIZES[rng.integers(len(SIZES))],
        position=POSITIONS[rng.integers(len(POSITIONS))],
        background=list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))],
    )


def wrong_value(scene: Scene, attribute: str, rng: np.random.Generator) -> Scene:
    """The same scene with ``attribute`` set to a different value, drawn uniformly."""
    current = getattr(scene, attribute)
    options = [v for v in values_of(attribute) if v != current]
    return scene.with_value(attribute, options[rng.integers(len(options))])


_WORD_TO_COUNT = {w: n for n, w in COUNT_WORDS.items()} | {"a": 1, "an": 1}
_SHAPE_RE = re.compile(r"\b(" + "|".join(SHAPES) + r")(s?)\b")
_COLOUR_RE = re.compile(r"\b(" + "|".join(COLOURS) + r")\b")
_BG_RE = re.compile(r"\b(" + "|".join(BACKGROUNDS) + r")\s+background\b")
_SIZE_RE = re.compile(r"\b(" + "|".join(SIZES) + r")\b")
_COUNT_RE = re.compile(r"\b(" + "|".join(_WORD_TO_COUNT) + r")\b")
_POS_RE = re.compile(r"\b(on the left|on the right|at the top|at the bottom)\b")


class CaptionParseError(ValueError):
    pass


def parse_caption(caption: str) -> Scene:
    """Recover the attributes from a Shapeland caption (canonical or with a prefix).

    Raises CaptionParseError naming the missing attribute: the utility is only defined for
    captions that state every attribute except position.
    """
    text = caption.lower()
    bg = _BG_RE.search(text)
    # Remove the background phrase first so its colour word is not read as the object colour.
    rest = _BG_RE.sub(" ", text)
    shape = _SHAPE_RE.search(rest)
    colour = _COLOUR_RE.search(rest)
    size = _SIZE_RE.search(rest)
    count = _COUNT_RE.search(rest)
    pos = _POS_RE.search(rest)
    for name, match in (("shape", shape), ("colour", colour), ("size", size), ("count", count),
                        ("background", bg)):
        if match is None:
            raise CaptionParseError(f"caption {caption!r} does not state a {name}")
    position = None
    if pos is not None:
        position = {v: k for k, v in POSITION_PHRASES.items()}[pos.group(1)]
    return Scene(
        shape=shape.group(1),
        colour=colour.group(1),
        count=_WORD_TO_COUNT[count.group(1)],
        size=size.group(1),
        position=position,
        background=bg.group(1),
    )
