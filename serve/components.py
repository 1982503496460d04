"""Connected components of an ink mask, with each one's box and area.

OpenCV's own statistics (connectedComponentsWithStats) cost ~6x the labelling itself on a page:
a 500x375 mask labels in ~0.18 ms and takes ~1.2 ms with them, on every request. The boxes and
areas are computed here from the ink pixels alone, which are few.
"""
from __future__ import annotations

import cv2
import numpy as np


def components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, labels, stats) of a bool or uint8 mask's 8-connected components: labels int32 as
    OpenCV's, stats int32 [n, 5] rows of x, y, w, h, area (OpenCV's CC_STAT_* columns), one per
    label. Row 0 is the background: the whole picture and its count of unset pixels."""
    u8 = mask.view(np.uint8) if mask.dtype == bool else mask
    n, labels = cv2.connectedComponents(u8, connectivity=8, ltype=cv2.CV_32S)
    h, w = u8.shape
    at = np.flatnonzero(u8.view(bool))  # the ink pixels, in raster order (on bool: ~10x faster than on uint8)
    lab = labels.ravel()[at]
    order = np.argsort(lab, kind="stable")  # grouped by label, each group still in raster order
    at, lab = at[order], lab[order]
    area = np.bincount(lab, minlength=n)
    start = np.concatenate(([0], np.cumsum(area[:-1])))[1:]  # label 0 (background) holds no ink pixel
    ys, xs = at // w, at % w
    stats = np.empty((n, 5), np.int32)
    stats[0] = (0, 0, w, h, h * w - len(at))
    if n > 1:
        x0, x1 = np.minimum.reduceat(xs, start), np.maximum.reduceat(xs, start)
        y0, y1 = ys[start], ys[start + area[1:] - 1]  # raster order: a group's first and last rows
        stats[1:] = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1, area[1:]], 1)
    return n, labels, stats
