"""Lay rendered panels out in one picture: a grid, each panel with its caption above (Pillow)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CAPTION_HEIGHT = 18
GAP = 4


def compose(panels: list, columns: int, title: str | None = None) -> np.ndarray:
    """``panels`` (``(caption, uint8 [row, column, 3])``, all the same size) in rows of ``columns``,
    on a dark background, with an optional title line; returns the picture as an RGB array."""
    from PIL import Image, ImageDraw

    height, width = panels[0][1].shape[:2]
    rows = -(-len(panels) // columns)
    top = CAPTION_HEIGHT + GAP if title else 0
    cell_h = height + CAPTION_HEIGHT
    canvas = Image.new("RGB", (columns * (width + GAP) + GAP, top + rows * (cell_h + GAP) + GAP), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((GAP, GAP), title, fill=(235, 235, 235))
    for n, (caption, pixels) in enumerate(panels):
        x = GAP + (n % columns) * (width + GAP)
        y = top + GAP + (n // columns) * (cell_h + GAP)
        draw.text((x + 2, y + 3), caption, fill=(235, 235, 235))
        canvas.paste(Image.fromarray(np.ascontiguousarray(pixels)), (x, y + CAPTION_HEIGHT))
    return np.asarray(canvas)


def save_picture(panels: list, path: str | Path, columns: int, title: str | None = None) -> Path:
    """:func:`compose` written as a PNG; returns the path."""
    from .views import save_png

    return save_png(compose(panels, columns, title), path)
