"""Pictures made for people rather than models: comparison mosaics and U-GAT-IT's CAM heatmaps.

Inputs and outputs are HWC RGB uint8 (numpy only; OpenCV is imported where it is used).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

GUTTER = 2  # px of white between mosaic cells


def mosaic(columns: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Columns of equally sized HWC crops -> one image (faces as rows), white gutters between cells."""
    from faceedit.images import to_uint8

    rows, size = len(columns[0]), columns[0][0].shape[0]
    step = size + GUTTER
    out = np.full((rows * step - GUTTER, len(columns) * step - GUTTER, 3), 255, np.uint8)
    for c, column in enumerate(columns):
        for r, crop in enumerate(column):
            y, x = r * step, c * step
            out[y : y + size, x : x + size] = to_uint8(np.asarray(crop))[..., :3]
    return out


def heatmap_image(heatmap: Any, size: int) -> np.ndarray:
    """U-GAT-IT's own visualisation of a CAM map [..., h, w]: min-max normalise, resize, JET colour map."""
    import cv2

    h = np.asarray(heatmap, np.float32).reshape(np.shape(heatmap)[-2:])
    h = h - h.min()
    h = h / max(float(h.max()), 1e-8)
    h = cv2.resize((h * 255).astype(np.uint8), (size, size))
    return cv2.cvtColor(cv2.applyColorMap(h, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
