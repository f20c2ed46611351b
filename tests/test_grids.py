"""Labelled image grids: shape checks, byte-identical output, wrapping into blocks."""

import numpy as np
import pytest
from PIL import Image

from seppo.imaging.grids import DPI, save_grid


def _imgs(rows, cols):
    return np.random.default_rng(0).integers(0, 255, (rows, cols, 8, 8, 3), dtype=np.uint8)


def test_grid_is_deterministic_and_sized_for_reading(tmp_path):
    save_grid(_imgs(2, 3), ["base", "round_1"], ["a", "b", "c"], tmp_path / "a.png", notes=[["1"] * 3] * 2)
    save_grid(_imgs(2, 3), ["base", "round_1"], ["a", "b", "c"], tmp_path / "b.png", notes=[["1"] * 3] * 2)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    w, h = Image.open(tmp_path / "a.png").size
    # 1.05 in of row labels + 3 cells of 1.45 in; 0.62 in of header + 2 rows of (1.45 + 0.22) in
    assert abs(w - (1.05 + 3 * 1.45) * DPI) < 1 and abs(h - (0.62 + 2 * 1.67) * DPI) < 1


def test_many_columns_wrap_into_blocks(tmp_path):
    save_grid(_imgs(1, 10), ["base"], [f"p{i}" for i in range(10)], tmp_path / "g.png", max_cols=4)
    w, h = Image.open(tmp_path / "g.png").size
    assert abs(w - (1.05 + 4 * 1.45) * DPI) < 1 and abs(h - 3 * (0.62 + 1.45) * DPI) < 1


def test_label_counts_must_match(tmp_path):
    with pytest.raises(ValueError, match="1 row labels / 3 column labels for a 2 x 3 grid"):
        save_grid(_imgs(2, 3), ["base"], ["a", "b", "c"], tmp_path / "g.png")
    with pytest.raises(ValueError, match=r"\(rows, cols, H, W, 3\)"):
        save_grid(_imgs(2, 3)[0], ["base"], ["a", "b", "c"], tmp_path / "g.png")
