"""The ground-truth utility on crafted good and bad images."""

import numpy as np
import pytest

from seppo.world.render import Defects, render
from seppo.world.scene import BACKGROUNDS, COLOURS, CaptionParseError, Scene, parse_caption
from seppo.world.utility import detect, utility

SCENE = Scene("square", "red", 2, "large", "left", "white")


def _clean(scene=SCENE, seed=0):
    return render(scene, 32, np.random.default_rng(seed))


def test_caption_round_trip():
    for scene in [SCENE, Scene("triangle", "cyan", 1, "small", None, "grey")]:
        assert parse_caption(scene.caption()) == scene
    assert parse_caption("a picture of one small blue circle on a black background").colour == "blue"
    with pytest.raises(CaptionParseError, match="does not state a shape"):
        parse_caption("two large red things on a white background")


def test_hand_drawn_square_is_detected_exactly():
    img = np.full((32, 32, 3), BACKGROUNDS["black"], dtype=np.uint8)
    img[4:16, 20:30] = COLOURS["yellow"]  # 12 x 10 px block: rows 4-15, columns 20-29
    det = detect(img)
    assert det.background == "black"
    assert det.count == 1 and det.colours == ("yellow",) and det.shapes == ("square",)
    assert det.sizes == ("large",)
    assert det.centroid == pytest.approx((25.0, 10.0))
    assert det.speckles == 0 and det.offcanvas == 0 and det.noise == 0.0


def test_clean_render_matching_caption_scores_full_marks():
    res = utility(_clean(), SCENE.caption())
    assert res.checks == {k: True for k in ("background", "count", "colour", "shape", "size", "position")}
    assert res.fidelity == 1.0
    assert res.quality > 0.95
    assert res.utility > 0.98


@pytest.mark.parametrize(
    "attribute,value",
    [("shape", "circle"), ("colour", "blue"), ("count", 3), ("size", "small"),
     ("position", "right"), ("background", "black")],
)
def test_each_wrong_attribute_fails_exactly_its_check(attribute, value):
    res = utility(_clean(), SCENE.with_value(attribute, value))
    failed = {k for k, ok in res.checks.items() if not ok}
    assert failed == {attribute}
    assert res.fidelity == pytest.approx(5 / 6)


@pytest.mark.parametrize(
    "defects,score",
    [(Defects(blur_sigma=1.5), "sharp"), (Defects(noise_std=20.0), "clean"),
     (Defects(speckles=4), "speckle_free"), (Defects(offcanvas=True), "in_frame")],
)
def test_defects_lower_quality(defects, score):
    from seppo.world.utility import quality_scores

    clean = utility(_clean(), SCENE)
    bad_img = render(SCENE, 32, np.random.default_rng(0), defects)
    bad = utility(bad_img, SCENE)
    assert quality_scores(bad.detection)[score] < quality_scores(clean.detection)[score] - 0.3
    assert bad.utility < clean.utility


def test_blank_image_scores_low():
    img = np.full((32, 32, 3), BACKGROUNDS["grey"], dtype=np.uint8)
    res = utility(img, SCENE.with_value("background", "grey"))
    assert res.detection.count == 0
    assert res.checks["background"] and not any(v for k, v in res.checks.items() if k != "background")
    assert res.utility < 0.45


def test_shapes_and_sizes_are_told_apart_on_clean_renders():
    rng = np.random.default_rng(1)
    for shape in ("circle", "square", "triangle"):
        for size in ("small", "large"):
            for _ in range(10):
                scene = Scene(shape, "green", 1, size, None, "white")
                det = detect(render(scene, 32, rng))
                assert det.shapes == (shape,) and det.sizes == (size,), (shape, size)


def test_image_of_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="expected an \\(H, W, 3\\) image"):
        detect(np.zeros((32, 32), dtype=np.uint8))
