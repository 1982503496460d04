"""Training digits as /read cuts them out of a written row: positives drawn the way serving sees them.

MNIST's digits sit alone and centred in their frames. The digits /read hands the model come out of a
row of handwriting on notebook paper: a neighbour's stroke in a corner, a touching pair cut apart, a
stroke mended where a paper line crossed it, sizes and baselines that differ. Here rows of training
digits (uneven sizes, gaps and baselines, some touching) are drawn on blank, ruled or squared paper,
lit unevenly, with sensor noise and JPEG, then read by serving's own `read_gray`; every reading it
offers that covers one drawn digit and little of its neighbours is kept, labelled with that digit.
Readings that take two digits whole or a part of one are not that digit. Asked for (`misses`), the
readings that take two touching digits together, offered beside their right cut (serve/reading.py's
`choose` weighs the two), are kept apart as non-digits: the two readings of one group are then
taught together, the cut as its digits and the whole as "not a digit".

Seeded, made from the run's training digits only, never stored. This generator is the training
side's own: tests/pages.py draws the evaluation pages, from MNIST's test digits, by other code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from serve.errors import ApiError
from serve.preprocess import read_gray
from train.negatives import SPEC, digit_ink, in_draw_order

DIGITS_PER_ROW = (2, 5)  # 2 to 4 digits
TOUCH = 0.25  # share of gaps where the next digit reaches back over the last
OVERLAP = (0.0, 0.12)  # how far, as a fraction of the row's height
GAP = (0.06, 0.5)  # the other gaps, as a fraction of the row's height
PAPERS = ("blank", "ruled", "squared")
# A reading is a digit's when it spans at least COVER of the digit's width and at most SPILL of any
# neighbour's. Looser, it keeps cuts that took a side off the digit (a "0" cut to a "C", an "8" to a
# "3"): on 600 rows, v6 read 95.6% of readings right at 0.75 / 0.3 and 98.8% at 0.9 / 0.2 (99.2%
# of the unambiguous ones either way), and a label the shape no longer shows is noise.
COVER = 0.9
SPILL = 0.2
# A reading is a miss when it spans at least MERGED of two digits' widths (both taken whole or
# mostly). Pieces of one digit (under 60% of its width) were counted too in a first form (commit
# 51ec775, README): numbers read better still, but 1.2 points fewer validation non-digits flagged.
MERGED = 0.5
# ... unless it is one straight stroke (its ink's spread across its main axis under this fraction
# of the spread along it), as a "1" is: the model must never learn that a "1" is not a digit.
# 96% of MNIST's training 1s are that thin, 1.3% of its other digits.
STROKE = 0.3


@dataclass(frozen=True)
class ReadDigits:
    images: np.ndarray  # uint8 [N, 28, 28]: what the model sees
    labels: np.ndarray  # int64 [N]: the digit each one is
    index: np.ndarray  # int64 [N]: the row each came from, which seeds it (see make)
    misses: np.ndarray = field(default_factory=lambda: _stack([]))  # uint8 [M, 28, 28]: wrong readings (make(misses=True))
    miss_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # int64 [M]: the row each came from

    @staticmethod
    def merge(parts: "list[ReadDigits]") -> "ReadDigits":
        """The parts make() drew on several processes, as one make() of all the rows would."""
        return ReadDigits(*in_draw_order(parts, "images", "labels"), *in_draw_order(parts, "misses", index="miss_index"))


def paper(h: int, w: int, unit: int, rng: np.random.Generator) -> np.ndarray:
    """float [h, w]: a grey sheet of blank, ruled or squared paper; the rules, slightly tilted, are
    drawn to the handwriting's size `unit` and as grey as coloured lines become in a grey picture."""
    sheet = np.full((h, w), rng.uniform(190, 250), np.float32)
    kind = PAPERS[rng.integers(len(PAPERS))]
    if kind == "blank":
        return sheet
    line = float(sheet[0, 0] - rng.uniform(25, 90))
    thick = int(rng.integers(1, 4))
    step = unit * (rng.uniform(0.6, 1.3) if kind == "ruled" else rng.uniform(0.35, 0.8))
    tilt = np.tan(np.radians(rng.uniform(-2.5, 2.5)))
    for y in np.arange(rng.uniform(0, step), h + abs(tilt) * w, step):
        cv2.line(sheet, (0, int(y)), (w, int(y - tilt * w)), line, thick)
    if kind == "squared":
        for x in np.arange(rng.uniform(0, step), w + abs(tilt) * h, step):
            cv2.line(sheet, (int(x), 0), (int(x + tilt * h), h), line, thick)
    return sheet


def photographed(sheet: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8: the sheet as a phone gives it back: light falling off across it, noise, JPEG."""
    h, w = sheet.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    lit = sheet * (1.0 - rng.uniform(0.05, 0.35) * np.hypot((xx - cx) / w, (yy - cy) / h))
    gray = np.clip(lit + rng.normal(0, rng.uniform(0, 5), lit.shape), 0, 255).astype(np.uint8)
    _, jpeg = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 95))])
    return cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)


def row(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
        underlines: float = 0.0) -> tuple[np.ndarray, list[tuple], list[int]]:
    """(picture, boxes, labels): a row of training digits written on paper; boxes (x, y, w, h) are
    where each digit's ink lies. `underlines`: the chance that a line is drawn under one of them."""
    n = int(rng.integers(*DIGITS_PER_ROW))
    size = int(rng.integers(36, 100))
    picks = rng.integers(len(digits), size=n)
    inks = [digit_ink(digits[i], int(size * rng.uniform(0.85, 1.15))) for i in picks]
    xs, x = [], 0
    for a in inks:
        xs.append(x)
        gap = -rng.uniform(*OVERLAP) if rng.uniform() < TOUCH else rng.uniform(*GAP)
        x += max(1, a.shape[1] + int(round(gap * size)))
    pad_x, pad_y = int(size * rng.uniform(0.3, 1.0)), int(size * rng.uniform(0.4, 1.2))
    h, w = size * 2 + 2 * pad_y, xs[-1] + inks[-1].shape[1] + 2 * pad_x
    ink = np.zeros((h, w), np.float32)
    boxes = []
    for a, x0 in zip(inks, xs):
        y0 = pad_y + size // 2 + int(size * rng.uniform(-0.1, 0.1)) + (size - a.shape[0]) // 2
        region = ink[y0 : y0 + a.shape[0], pad_x + x0 : pad_x + x0 + a.shape[1]]
        np.maximum(region, a, out=region)
        boxes.append((pad_x + x0, y0, a.shape[1], a.shape[0]))
    if underlines and rng.uniform() < underlines:
        underline(ink, boxes[int(rng.integers(len(boxes)))], size, rng)
    sheet = paper(h, w, size, rng)
    pen = rng.uniform(0, 90)
    return photographed(sheet - ink * np.maximum(sheet - pen, 0), rng), boxes, [int(labels[i]) for i in picks]


def underline(ink: np.ndarray, box: tuple, size: int, rng: np.random.Generator) -> None:
    """Draw (in place) a pen line under the digit in `box`, touching its lowest ink or just
    under it, reaching out past one side or both, level or a little tilted. Its box stays the
    digit's own: a reading with the line is still that digit, as the one without it is."""
    x, y, w, h = box
    foot = y + int(np.flatnonzero(ink[y : y + h, x : x + w].max(1) > 0.5)[-1])
    left, right = rng.permutation([rng.uniform(0.2, 0.8), rng.uniform(-0.2, 0.8)]) * size  # out past one side at least
    ends = [(x - left, foot), (x + w + right, foot + rng.uniform(-0.08, 0.08) * size)]
    lift = rng.uniform(-0.01, 0.04) * size  # through the foot's lowest row, or just under it
    thick = max(1, int(round(rng.uniform(0.03, 0.08) * size)))
    pts = [(int(round(px)), int(round(py + lift + thick / 2))) for px, py in ends]
    cv2.line(ink, pts[0], pts[1], 1.0, thick, cv2.LINE_AA)


def owner(box: tuple, boxes: list[tuple]) -> int:
    """Index of the drawn digit a reading's box is (COVER of its width, SPILL at most of any other's), else -1."""
    cover = _covers(box, boxes)
    best = int(np.argmax(cover))
    if cover[best] < COVER or any(c > SPILL for i, c in enumerate(cover) if i != best):
        return -1
    return best


def _covers(box: tuple, boxes: list[tuple]) -> list[float]:
    """The share of each drawn digit's width that a reading's box spans."""
    x, w = box[0], box[2]
    return [max(0, min(x + w, bx + bw) - max(x, bx)) / bw for bx, _, bw, _ in boxes]


def is_miss(box: tuple, boxes: list[tuple]) -> bool:
    """A reading that is clearly not one digit: two digits taken together."""
    cover = sorted(_covers(box, boxes), reverse=True)
    return len(cover) > 1 and cover[1] >= MERGED


def one_stroke(image: np.ndarray) -> bool:
    """A model input (28x28) whose ink is one straight stroke, as a "1" is (any slant)."""
    ys, xs = np.nonzero(image > 64)
    if ys.size < 3:
        return True
    spread = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]), aweights=image[ys, xs].astype(np.float64)))
    return bool(np.sqrt(max(spread[0], 0.0) / max(spread[1], 1e-9)) < STROKE)


def cut_out(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
            misses: bool = False, underlines: float = 0.0) -> tuple[list[tuple[np.ndarray, int]], list[np.ndarray]]:
    """(kept, missed) of one row: (image, label) of each digit that a reading cuts out as itself, once
    (the first such reading: a group of touching digits offers the same cut in several readings);
    with `misses`, the image of each other reading of an ambiguous group that takes two digits
    together, once per box (else none). Both empty when the reading refuses the row."""
    gray, boxes, row_labels = row(digits, labels, rng, underlines)
    try:
        found = read_gray(gray, SPEC)
    except ApiError:
        return [], []
    out, missed = {}, {}
    for d in found:
        k = owner(d.box, boxes)
        if k >= 0 and k not in out:
            out[k] = (d.image, row_labels[k])
        elif misses and k < 0 and d.choice >= 0 and is_miss(d.box, boxes) and not one_stroke(d.image):
            missed.setdefault(d.box, d.image)
    return [out[k] for k in sorted(out)], list(missed.values())


def make(n: int, seed: int, digits: np.ndarray, labels: np.ndarray, part: tuple[int, int] = (0, 1),
         misses: bool = False, underlines: float = 0.0) -> ReadDigits:
    """The digits read from n rows, a function of the seed: row i is seeded by (seed, i), so
    part=(i, k), rows i, i+k, ... (one process's share), merged over the k parts equals the whole.
    misses: keep the wrong readings too (the digits are the same either way); underlines: the
    share of rows with a line drawn under one digit (row()); 0 draws the rows as before, bit for bit."""
    images, got, index, wrong, wrong_index = [], [], [], [], []
    for i in range(part[0], n, part[1]):
        kept, missed = cut_out(digits, labels, np.random.default_rng([seed, i, 0x8EAD]), misses, underlines)
        for image, label in kept:
            images.append(image)
            got.append(label)
            index.append(i)
        wrong += missed
        wrong_index += [i] * len(missed)
    return ReadDigits(_stack(images), np.array(got, np.int64), np.array(index, np.int64),
                      _stack(wrong), np.array(wrong_index, np.int64))


def _stack(images: list[np.ndarray]) -> np.ndarray:
    return np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)


if __name__ == "__main__":  # python -m train.read_digits OUT.png [ROWS]: a contact sheet to look at
    import sys
    import time

    from PIL import Image

    from train.mnist import load_split, resolve_data_dir

    train = load_split(resolve_data_dir(None), "train")
    t = time.perf_counter()
    got = make(int(sys.argv[2]) if len(sys.argv) > 2 else 100, 1, train.images, train.labels)
    print(f"{len(got.images)} digits from {got.index.max() + 1 if len(got.index) else 0} rows in "
          f"{time.perf_counter() - t:.1f} s; labels {np.bincount(got.labels, minlength=10).tolist()}")
    k = int(np.ceil(np.sqrt(max(1, len(got.images)))))
    sheet = np.zeros((k * 28, k * 28), np.uint8)
    for i, im in enumerate(got.images):
        sheet[(i // k) * 28 : (i // k + 1) * 28, (i % k) * 28 : (i % k + 1) * 28] = im
    Image.fromarray(sheet).resize((k * 56, k * 56), Image.Resampling.NEAREST).save(sys.argv[1])
