"""Find the sheet of paper on a photo of it lying on a desk (pure functions on uint8 arrays).

A phone photo of a note often shows the desk around the sheet. Its border is then dark, and
read as a whole the picture looks like light ink on a dark canvas: the desk becomes the paper
and the sheet one huge stroke. Found here the way document scanners find a page: on a small copy,
the bright region that Otsu's threshold separates from a darker surround, its ink filled in by a
closing, must be large, nearly all paper, wide, and have something written on it (a light stroke
drawn on a dark canvas fails all but the first); the rotated rectangle around it is the sheet.
The sheet is then turned upright and cut out, so the rest of the pipeline sees a page with dark
ink on it, as usual, its ruling level and its digits as they were written.

A page photographed crooked, desk or not, keeps its ruling at a slope the line search
(serve/lines.py) does not follow past ~3 degrees: `ruling_tilt` finds it among the ink the search
left, and the picture is turned level (`levelled`) and searched again.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAGE_SEARCH = 200  # longest side of the copy the sheet is searched on (a sheet is large: detail is not needed)
PAGE_AREA = 0.15  # the sheet covers at least this fraction of the picture
PAGE_DESK = 0.03  # ... and the desk at least this fraction
PAGE_PAPER = 0.8  # ... at least this fraction of it is paper (the rest: ink, ruling)
PAGE_SIDE = 0.3  # ... its shorter side at least this fraction of the picture's
PAGE_INK = 3  # ... and at least this many pixels of ink inside it, on the small copy
PAGE_CONTRAST = 40  # grey levels between the paper and the desk around it
PAGE_BORDER = 0.05  # a light border frames a sheet when at least this fraction of it is desk
PAGE_CLOSE = 0.04  # ink and ruling narrower than this fraction of the longest side are filled in
PAGE_EDGE = 0.05  # a rectangle from the sheet's edges narrower than this (fraction of the picture's side) is one edge
PAGE_OUTSIDE = 0.02  # a rectangle from the sheet's edges that leaves more of it out than this is not its lie
TILT_FROM = 64  # pixels: smaller pictures hold one digit, not a ruled page (as the line search)
TILT_SEARCH = 100  # longest side of the copy lines are looked for on (the Hough transform's cost goes with its pixels)
TILT_REACH = 0.7  # ruling is looked for when ink the line search left reaches this fraction of the columns
TILT_VOTES = 0.8  # ... as straight lines crossing this fraction of the width
TILT_APART = 0.2  # ... two of them at one turn this far apart (fraction of the height), or
TILT_ALONE = 0.9  # ... one crossing this fraction of the width
TILT_MIN, TILT_MAX = 3.5, 16.0  # degrees: flatter ruling the line search follows (up to ~3); steeper is rarely ruling
PAGE_WRITING = 0.002  # writing covers at least this share of paper (a small digit on a large page: ~0.5%)
PAGE_MARGIN = 0.01  # the sheet is cut this far inside its outline (fraction of the longest side): its blurred edge


@dataclass(frozen=True)
class Page:
    corners: np.ndarray  # float32 [4, 2]: the sheet's corners (x, y) in the picture's pixels: top left, top right, bottom right, bottom left
    paper: int  # the paper's grey level
    rim: int  # pixels inside the corners where the sheet's own edge ends: what is cut away
    desk: np.ndarray | None = None  # bool, on the search copy: desk to paint over (a sheet whose lie is unknown)


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
    sheet = np.zeros(small.shape, np.uint8)
    cv2.drawContours(sheet, [outline], -1, 1, thickness=cv2.FILLED)
    sheet = sheet > 0
    area = np.count_nonzero(sheet)
    if area < PAGE_AREA * small.size or area > (1 - PAGE_DESK) * small.size:  # no sheet, or no desk around it
        return None
    # The sheet's rectangle, from its own edges: where the frame cuts it, the outline runs along the
    # frame (a sheet larger than the frame shows only its corners' edges, and the desk beyond them).
    points = outline[:, 0, :]
    sh, sw = small.shape
    own = (points[:, 0] > 1) & (points[:, 0] < sw - 2) & (points[:, 1] > 1) & (points[:, 1] < sh - 2)
    corners = upright_corners(cv2.boxPoints(cv2.minAreaRect(points[own] if np.count_nonzero(own) >= 3 else points)))
    inside = np.zeros(small.shape, np.uint8)
    cv2.fillConvexPoly(inside, np.round(corners).astype(np.int32), 1)
    inside = inside > 0
    # One straight edge of a sheet larger than the frame (the desk along a side) makes no rectangle.
    edge_only = min(rect_sides(corners)) < PAGE_EDGE * min(small.shape)
    # Mostly paper in its rectangle (a digit's strokes, even bold, fill at most an ellipse of theirs).
    if not edge_only and np.count_nonzero(light & inside) < PAGE_PAPER * np.count_nonzero(inside):
        return None
    desk = None
    if edge_only or np.count_nonzero(sheet & ~inside) > PAGE_OUTSIDE * area:
        # Too little of the sheet's own edges shows to say how it lies (a side, a corner or two of a
        # sheet larger than the frame): it is cut out as it stands, the desk painted over as paper.
        desk = ~sheet
        if writing_on(small[desk], float(np.median(small[desk]))):
            return None  # a shadow across the paper, not a desk: the digit may lie in it
        x, y, bw, bh = cv2.boundingRect(outline)
        corners = np.float32([(x, y), (x + bw, y), (x + bw, y + bh), (x, y + bh)])
    # A sheet is wide (a light stroke on a dark canvas, a bold "1", is a narrow bar) and has writing on it.
    if min(rect_sides(corners)) < PAGE_SIDE * min(small.shape):
        return None
    if np.count_nonzero((cv2.erode(sheet.view(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~light) < PAGE_INK:
        return None
    if edge_step(small, sheet) < PAGE_CONTRAST:  # a light fall-off darkening a corner, not a sheet's edge
        return None
    # The outline is as exact as the small copy's pixels (1 / f of the picture's) and the edge's blur.
    rim = int(round(PAGE_MARGIN * max(h, w) + 2 / f)) + 1
    return Page(corners=(corners / f).astype(np.float32), paper=int(np.median(small[light & sheet])), rim=rim,
                desk=desk)


def writing_on(values: np.ndarray, paper: float) -> bool:
    """Whether grey levels of paper at level `paper` hold writing: values much darker than it (at
    most half of it, and PAGE_CONTRAST below) on at least PAGE_WRITING of them. A desk, its grain
    and noise, has none; paper in a shadow keeps the pen darker still."""
    below = min(paper - PAGE_CONTRAST, paper / 2)
    return below > 0 and np.count_nonzero(values < below) >= PAGE_WRITING * values.size


def edge_step(small: np.ndarray, sheet: np.ndarray) -> float:
    """How much brighter the picture is just inside the sheet's outline than just outside it (grey
    levels, medians of bands 2 pixels wide, 1 pixel off the outline): a sheet's edge is a step,
    a light falling off is a slope. 0 where nothing lies outside."""
    u8 = sheet.astype(np.uint8)
    ring = np.ones((3, 3), np.uint8)
    band_in = (cv2.erode(u8, ring, iterations=1) > 0) & ~(cv2.erode(u8, ring, iterations=3) > 0)
    band_out = (cv2.dilate(u8, ring, iterations=3) > 0) & ~(cv2.dilate(u8, ring, iterations=1) > 0)
    if not band_out.any() or not band_in.any():
        return 0.0
    return float(np.median(small[band_in])) - float(np.median(small[band_out]))


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


def ruling_tilt(mask: np.ndarray) -> float:
    """The turn in degrees of paper ruling left in a mask of ink (photographed crooked: the line
    search follows only a slight tilt), 0.0 when there is none. Ruling is straight lines, parallel,
    across most of the picture: the Hough transform must find two such lines at one turn, well
    apart (a bold stroke is many lines side by side), or one crossing nearly all of it. Most
    pictures are answered at once: the ink reaches too few columns."""
    h, w = mask.shape
    if min(h, w) < TILT_FROM or np.count_nonzero(mask.any(0)) < TILT_REACH * w:
        return 0.0
    step = -(-max(h, w) // TILT_SEARCH)
    u8 = mask.view(np.uint8) * np.uint8(255)
    small = cv2.resize(u8, (max(1, w // step), max(1, h // step)), interpolation=cv2.INTER_AREA) if step > 1 else u8
    spread, (sh, sw) = np.radians(TILT_MAX), small.shape
    found = cv2.HoughLinesWithAccumulator((small > 0).view(np.uint8), 1, np.pi / 360, int(TILT_VOTES * sw),
                                          min_theta=np.pi / 2 - spread, max_theta=np.pi / 2 + spread)
    if found is None:
        return 0.0
    rho, theta, votes = found[:, 0, 0], found[:, 0, 1], found[:, 0, 2]
    best = int(np.argmax(votes))
    near = np.abs(theta - theta[best]) <= np.radians(1.5)
    if not (near & (np.abs(rho - rho[best]) >= TILT_APART * sh)).any() and votes[best] < TILT_ALONE * sw:
        return 0.0
    tilt = float(np.degrees(np.median(theta[near][:5]))) - 90.0
    return tilt if TILT_MIN <= abs(tilt) <= TILT_MAX else 0.0


def levelled(shape: tuple[int, int], tilt: float, paper: int) -> Page:
    """The page that turns a whole picture by `tilt` degrees (ruling_tilt's): a rectangle of the
    picture's own size, along the ruling, about its centre. Its corners lose a little of the
    picture's, and gain paper: a larger one would leave the ruling short of its sides, where the
    line search looks for lines that cross nearly all of them."""
    h, w = shape
    a = np.radians(tilt)
    along, across = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    centre = np.array([w / 2, h / 2])
    corners = [centre + (sx * w * along + sy * h * across) / 2 for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    return Page(corners=np.float32(corners), paper=paper, rim=0)


def with_margin(light: np.ndarray, margin: float, paper: float) -> tuple[np.ndarray, np.ndarray]:
    """(picture, to_picture): the picture on a sheet `margin` pixels larger on every side, of
    paper at level `paper`, and the 2x3 map from the larger sheet back to the picture."""
    m = max(1, int(round(margin)))
    out = cv2.copyMakeBorder(light, m, m, m, m, cv2.BORDER_CONSTANT, value=int(round(paper)))
    return out, np.float64([[1, 0, -m], [0, 1, -m]])


def chain(first: np.ndarray | None, then: np.ndarray) -> np.ndarray:
    """The 2x3 affine map applying `then` and then `first` (maps back to the picture, innermost last)."""
    if first is None:
        return then
    return (np.vstack([first, (0, 0, 1)]) @ np.vstack([then, (0, 0, 1)]))[:2]


def on_page(gray: np.ndarray, page: Page) -> tuple[np.ndarray, np.ndarray]:
    """(sheet, to_picture): the sheet turned upright and cut out of the picture (without a thin
    rim: its edge and shadow), paper where the frame cut it off; and the 2x3 affine map from the
    sheet's pixels back to the picture's."""
    tl, tr, br, bl = page.corners
    width, height = (int(round(v)) for v in rect_sides(page.corners))
    m = page.rim
    if page.desk is not None:  # painted as paper, a little into the sheet (its edge, the search copy's coarse pixels)
        desk = cv2.resize(page.desk.view(np.uint8), (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_NEAREST)
        gray = np.where(cv2.dilate(desk, np.ones((2 * m + 1, 2 * m + 1), np.uint8)) > 0, np.uint8(page.paper), gray)
        m = 0
    width, height = max(1, width - 2 * m), max(1, height - 2 * m)
    to_sheet = cv2.getAffineTransform(np.float32([tl, tr, bl]), np.float32([(-m, -m), (width + m, -m), (-m, height + m)]))
    sheet = cv2.warpAffine(gray, to_sheet, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=page.paper)
    return sheet, cv2.invertAffineTransform(to_sheet)


def within(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box (x, y, w, h) cut to a picture of `size` (width, height), at least a pixel each way."""
    x, y, w, h = box
    x0, y0 = min(max(x, 0), size[0] - 1), min(max(y, 0), size[1] - 1)
    x1, y1 = max(min(x + w, size[0]), x0 + 1), max(min(y + h, size[1]), y0 + 1)
    return x0, y0, x1 - x0, y1 - y0


def box_on_picture(box: tuple[float, float, float, float], to_picture: np.ndarray) -> tuple[float, float, float, float]:
    """A box (x, y, w, h) on the upright sheet -> the box around it on the picture."""
    x, y, w, h = box
    corners = np.array([(x, y, 1), (x + w, y, 1), (x, y + h, 1), (x + w, y + h, 1)], np.float64) @ to_picture.T
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)
