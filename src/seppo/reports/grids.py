"""Image grids with captions and scores, rendered deterministically with matplotlib."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ..io_utils import atomic_path


def save_grid(
    images: np.ndarray, titles: list[str], path: str | Path, cols: int = 8, title: str = ""
) -> None:
    """A PNG grid of (N, H, W, 3) uint8 images, each under its wrapped title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 2.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, t in zip(axes.ravel(), images, titles):
        ax.imshow(img, interpolation="nearest")
        ax.set_title("\n".join(textwrap.wrap(t, 22)), fontsize=5.5)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(h_pad=1.2)
    with atomic_path(path) as tmp:
        # No date or version in the metadata: identical inputs give identical bytes.
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
