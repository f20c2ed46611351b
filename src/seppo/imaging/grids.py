"""Labelled image grids: prompts as column headers, checkpoints as row labels, one score per cell.

Rendered with matplotlib at a fixed size and DPI with no date in the metadata, so identical inputs
give identical bytes. Sized for reading at 100% zoom: cells of ~150 px, text of 10-12 px.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ..io_utils import atomic_path

DPI = 110
CELL_IN = 1.45  # inches per image cell (~160 px at DPI)
HEADER_IN = 0.62  # room for a wrapped prompt above each block of columns
LABEL_IN = 1.05  # room for the row labels on the left
HEADER_PT = 8.0  # 8 pt at 110 dpi = 12 px
NOTE_PT = 7.5
LABEL_PT = 8.5


def save_grid(
    images: np.ndarray,
    row_labels: list[str],
    col_labels: list[str],
    path: str | Path,
    notes: list[list[str]] | None = None,
    title: str = "",
    max_cols: int = 8,
) -> None:
    """A PNG grid of ``images`` shaped (rows, cols, H, W, 3) uint8.

    ``col_labels`` (one per column, e.g. prompts) head the columns once per block; ``row_labels``
    (e.g. checkpoints) name the rows; ``notes[r][c]`` is printed under cell (r, c) (e.g. a score).
    More than ``max_cols`` columns wrap into blocks stacked vertically, each with its own header.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if images.ndim != 5:
        raise ValueError(f"images must be (rows, cols, H, W, 3); got shape {images.shape}")
    n_rows, n_cols = images.shape[:2]
    if len(row_labels) != n_rows or len(col_labels) != n_cols:
        raise ValueError(f"{len(row_labels)} row labels / {len(col_labels)} column labels for a "
                         f"{n_rows} x {n_cols} grid")
    cols = min(max_cols, n_cols)
    blocks = [list(range(b, min(b + cols, n_cols))) for b in range(0, n_cols, cols)]
    note_in = 0.22 if notes else 0.0
    block_h = HEADER_IN + n_rows * (CELL_IN + note_in)
    title_in = 0.35 if title else 0.0
    fig_w, fig_h = LABEL_IN + cols * CELL_IN, title_in + len(blocks) * block_h
    fig = plt.figure(figsize=(fig_w, fig_h))
    if title:
        fig.text(0.5, 1 - 0.5 * title_in / fig_h, title, ha="center", va="center", fontsize=LABEL_PT)
    for b, block in enumerate(blocks):
        top = title_in + b * block_h  # inches from the top of the figure
        for j, c in enumerate(block):
            x0 = LABEL_IN + j * CELL_IN
            header = "\n".join(textwrap.wrap(col_labels[c], 22)[:3])
            fig.text((x0 + CELL_IN / 2) / fig_w, 1 - (top + HEADER_IN - 0.04) / fig_h, header,
                     ha="center", va="bottom", fontsize=HEADER_PT, linespacing=1.1)
            for r in range(n_rows):
                y_top = top + HEADER_IN + r * (CELL_IN + note_in)
                ax = fig.add_axes(((x0 + 0.06) / fig_w, 1 - (y_top + CELL_IN - 0.06) / fig_h,
                                   (CELL_IN - 0.12) / fig_w, (CELL_IN - 0.12) / fig_h))
                ax.imshow(images[r, c], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if notes:
                    fig.text((x0 + CELL_IN / 2) / fig_w, 1 - (y_top + CELL_IN + 0.02) / fig_h, notes[r][c],
                             ha="center", va="top", fontsize=NOTE_PT)
        for r in range(n_rows):
            y_mid = top + HEADER_IN + r * (CELL_IN + note_in) + CELL_IN / 2
            fig.text(0.06 / fig_w, 1 - y_mid / fig_h, "\n".join(textwrap.wrap(row_labels[r], 12)),
                     ha="left", va="center", fontsize=LABEL_PT, weight="bold")
    with atomic_path(path) as tmp:
        # No date or version in the metadata: identical inputs give identical bytes.
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
