"""Find the sheet of paper on a photo of it lying on a desk (pure functions on uint8 arrays).

A phone photo of a note often shows the desk around the sheet. Its border is then dark, and
read as a whole the picture looks like light ink on a dark canvas: the desk becomes the paper
and the sheet one huge stroke. Found here the way document scanners find a page: on a small copy,
the bright region that Otsu's threshold separates from a darker surround, its ink filled in by a
closing, must be large, nearly all paper, wide, and have something written on it (a light stroke
drawn on a dark canvas fails all but the first); the rotated rectangle around it is the sheet.
The sheet is then turned upright and cut out, so the rest of the pipeline sees a page with dark
ink on it, as usual, its ruling level and its digits as they were written.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAGE_SEARCH = 200  # longest side of the copy the sheet is searched on (a sheet is large: detail is not needed)
PAGE_AREA = 0.15  # the sheet covers at least this fraction of the picture
PAGE_PAPER = 0.8  # ... at least this fraction of it is paper (the rest: ink, ruling)
PAGE_SIDE = 0.3  # ... its shorter side at least this fraction of the picture's
PAGE_INK = 3  # ... and at least this many pixels of ink inside it, on the small copy
PAGE_CONTRAST = 40  # grey levels between the paper and the desk around it
PAGE_CLOSE = 0.04  # ink and ruling narrower than this fraction of the longest side are filled in
PAGE_MARGIN = 0.01  # the sheet is cut this far inside its outline (fraction of the longest side): its blurred edge


@dataclass(frozen=True)
class Page:
    corners: np.ndarray  # float32 [4, 2]: the sheet's corners (x, y) in the picture's pixels: top left, top right, bottom right, bottom left
    paper: int  # the paper's grey level
    rim: int  # pixels inside the corners where the sheet's own edge ends: what is cut away


def find_page(gray: np.ndarray) -> Page | None:
    """The sheet of paper a darker surround frames on this picture, or None (no sheet, or no surround)."""
    h, w = gray.shape
    step = -(-max(h, w) // PAGE_SEARCH)  # a whole factor: INTER_AREA is several times faster by one
    f = 1.0 / step
    small = cv2.resize(gray, (max(1, w // step), max(1, h // step)), interpolation=cv2.INTER_AREA) if step > 1 else gray
    _, bright = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    light = bright > 0
    if light.all() or not light.any() or small[light].mean() - small[~light].mean() < PAGE_CONTRAST:
        return None
    k = max(3, round(PAGE_CLOSE * max(small.shape))) | 1
    closed = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    outline = max(contours, key=cv2.contourArea)
    corners = upright_corners(cv2.boxPoints(cv2.minAreaRect(outline)))
    inside = np.zeros(small.shape, np.uint8)
    cv2.fillConvexPoly(inside, np.round(corners).astype(np.int32), 1)
    inside = inside > 0
    area = np.count_nonzero(inside)
    if area < PAGE_AREA * small.size or area > 0.97 * small.size:  # no sheet, or no desk around it
        return None
    if np.count_nonzero(light & inside) < PAGE_PAPER * area:  # mostly dark inside: strokes on a canvas
        return None
    # A sheet is wide (a light stroke on a dark canvas, a bold "1", is a narrow bar) and has writing on it.
    if min(rect_sides(corners)) < PAGE_SIDE * min(small.shape):
        return None
    sheet = np.zeros(small.shape, np.uint8)
    cv2.drawContours(sheet, [outline], -1, 1, thickness=cv2.FILLED)
    if np.count_nonzero((cv2.erode(sheet, np.ones((3, 3), np.uint8)) > 0) & ~light) < PAGE_INK:
        return None
    # The outline is as exact as the small copy's pixels (1 / f of the picture's) and the edge's blur.
    rim = int(round(PAGE_MARGIN * max(h, w) + 2 / f)) + 1
    return Page(corners=(corners / f).astype(np.float32), paper=int(np.median(small[light & inside])), rim=rim)


def upright_corners(points: np.ndarray) -> np.ndarray:
    """A rectangle's four corners as top left, top right, bottom right, bottom left, taking the
    sheet to be turned by less than 45 degrees (people photograph their writing about upright)."""
    centre = points.mean(0)
    edge = points[1] - points[0]
    a = np.arctan2(edge[1], edge[0])
    a = (a + np.pi / 4) % (np.pi / 2) - np.pi / 4  # the turn of the sheet's sides nearest to level
    d = points - centre
    # Turned back by that angle, each corner lies in its own quadrant around the centre.
    x, y = np.cos(a) * d[:, 0] + np.sin(a) * d[:, 1], -np.sin(a) * d[:, 0] + np.cos(a) * d[:, 1]
    left, top = x < 0, y < 0
    return points[np.argsort(np.where(top, np.where(left, 0, 1), np.where(left, 3, 2)), kind="stable")].astype(np.float32)


def rect_sides(corners: np.ndarray) -> tuple[float, float]:
    """(width, height) of a rectangle given by its upright_corners."""
    tl, tr, br, bl = corners
    return (float(np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2, float(np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2)


def on_page(gray: np.ndarray, page: Page) -> tuple[np.ndarray, np.ndarray]:
    """(sheet, to_picture): the sheet turned upright and cut out of the picture (without a thin
    rim: its edge and shadow), paper where the frame cut it off; and the 2x3 affine map from the
    sheet's pixels back to the picture's."""
    tl, tr, br, bl = page.corners
    width, height = (int(round(v)) for v in rect_sides(page.corners))
    m = page.rim
    width, height = max(1, width - 2 * m), max(1, height - 2 * m)
    to_sheet = cv2.getAffineTransform(np.float32([tl, tr, bl]), np.float32([(-m, -m), (width + m, -m), (-m, height + m)]))
    sheet = cv2.warpAffine(gray, to_sheet, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=page.paper)
    return sheet, cv2.invertAffineTransform(to_sheet)


def box_on_picture(box: tuple[float, float, float, float], to_picture: np.ndarray) -> tuple[float, float, float, float]:
    """A box (x, y, w, h) on the upright sheet -> the box around it on the picture."""
    x, y, w, h = box
    corners = np.array([(x, y, 1), (x + w, y, 1), (x, y + h, 1), (x + w, y + h, 1)], np.float64) @ to_picture.T
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)
