"""The committed model through the server's own preprocessing on generated notebook pictures
(tests/pages.py), each kind held to its figure on a seeded sample (seeds of their own, apart from
the tuning and the reported ranges). The figures on 1000 pictures per kind are in the README;
these bounds sit a little under them, to catch a regression without flaking on a small sample."""
import numpy as np
import pytest

from tests.pages import KINDS, Reader, edits, picture

TEST_SEED = 500_000
N = 200


@pytest.fixture(scope="module")
def setup(committed_model, mnist_dir):
    from train.mnist import load_split

    test = load_split(mnist_dir, "test")
    return Reader(committed_model), test.images, test.labels


def pictures(kind, setup, n=N):
    _, images, labels = setup
    return [picture(kind, TEST_SEED + i, images, labels) for i in range(n)]


def predict_accuracy(reader, pics):
    answers = [reader.predict(p.data) for p in pics]
    return float(np.mean([a is not None and str(a[0]) == p.text for a, p in zip(answers, pics)]))


def read_exactly(reader, pics):
    return float(np.mean([reader.read(p.data) == p.text for p in pics]))


def test_single_digit_on_notebook_paper_is_read_nearly_as_on_blank_paper(setup):
    reader = setup[0]
    blank = predict_accuracy(reader, pictures("single_blank", setup))
    for kind in ("single_ruled", "single_squared"):
        acc = predict_accuracy(reader, pictures(kind, setup))
        print(f"{kind}: {acc:.3f} (blank paper: {blank:.3f})")
        assert acc >= blank - 0.05, kind


def test_single_digit_beside_a_margin_line_or_marks(setup):
    reader = setup[0]
    for kind, bound in (("single_margin", 0.94), ("cluttered", 0.88)):
        acc = predict_accuracy(reader, pictures(kind, setup))
        print(f"{kind}: {acc:.3f}")
        assert acc >= bound, kind


def test_numbers_are_read_and_predict_does_not_pretend_they_are_one_digit(setup):
    reader = setup[0]
    pics = pictures("number", setup)
    texts = [reader.read(p.data) or "" for p in pics]
    exact = np.mean([t == p.text for t, p in zip(texts, pics)])
    right = 1 - sum(min(len(p.text), edits(p.text, t)) for t, p in zip(texts, pics)) / sum(len(p.text) for p in pics)
    answers = [reader.predict(p.data) for p in pics]
    confident = np.mean([a is not None and a[1] >= reader.uncertain_below for a in answers])
    print(f"numbers: {exact:.3f} exactly, {right:.4f} of digits; /predict confident single digit {confident:.3f}")
    assert exact >= 0.75 and right >= 0.915
    assert confident <= 0.03


# A sheet with the desk in the picture, one digit and a number: (kinds, floors for /predict on the
# single digits and for numbers read exactly), each once read poorly (tuning seeds, before):
ON_DESKS = [
    # 11% and none: the desk's dark border made the sheet one big light stroke (before serve/page.py).
    (("desk_single", "desk_number"), (0.96, 0.85)),
    # 85% and 83%: close up, the desk along a side (its sheet's lie unknown) was left in, and the
    # ruling no longer crossed the picture.
    (("close_up_single", "close_up_number"), (0.93, 0.88)),
]


@pytest.mark.parametrize("kinds, floors", ON_DESKS, ids=[k[0].split("_")[0] for k, _ in ON_DESKS])
def test_a_sheet_with_the_desk_in_the_picture_is_read_as_on_flat_paper(setup, kinds, floors):
    reader = setup[0]
    single = predict_accuracy(reader, pictures(kinds[0], setup))
    exact = read_exactly(reader, pictures(kinds[1], setup))
    print(f"{kinds[0]}: {single:.3f} (/predict); {kinds[1]}: {exact:.3f} read exactly")
    assert single >= floors[0] and exact >= floors[1]


def test_digits_written_in_a_forms_boxes_are_read(setup):
    # 68% of single digits and 41% of numbers read right on tuning seeds before serve/frames.py:
    # the printed boxes joined the digits into one piece of ink, their sides and teeth read as "1"s.
    reader = setup[0]
    single = predict_accuracy(reader, pictures("form_single", setup))
    exact = read_exactly(reader, pictures("form_number", setup))
    print(f"form_single: {single:.3f} (/predict); form_number: {exact:.3f} read exactly")
    assert single >= 0.96 and exact >= 0.82


# One digit photographed as people do, each once read poorly (/predict right on tuning seeds, before):
HARD_SINGLES = [
    # 61%: ruling 4-15 degrees off level was ink, until serve/page.py's ruling_tilt levelled it.
    ("single_crooked", 0.88),
    # 77%: a shadow over most of the border made a dark canvas, its wedges at the frame's edge were
    # ink, its lit part was cut out as a sheet on a desk.
    ("single_shadowed", 0.93),
    # 22%: paper darker than mid-grey all round (poor light) was a dark canvas.
    ("single_dim", 0.96),
    # 88%: cropped tight to the ink, the paper level followed the wide strokes into it.
    ("single_tight", 0.89),
]


@pytest.mark.parametrize("kind, floor", HARD_SINGLES, ids=[k for k, _ in HARD_SINGLES])
def test_a_digit_photographed_as_people_do_is_read(setup, kind, floor):
    acc = predict_accuracy(setup[0], pictures(kind, setup))
    print(f"{kind}: {acc:.3f}")
    assert acc >= floor


def test_generators_are_seeded_and_hold_what_they_say(setup):
    _, images, labels = setup
    for kind in KINDS:
        a, b = picture(kind, 7, images, labels), picture(kind, 7, images, labels)
        assert a.data == b.data and a.text == b.text and a.text.isdigit()
    lengths = {len(picture("number", i, images, labels).text) for i in range(40)}
    assert lengths <= set(range(2, 9)) and len(lengths) >= 5


def test_misses_are_sorted_by_where_the_reading_went_wrong():
    from tests.pages import Picture, misses

    truth = Picture(b"", "123", boxes=((0, 0, 10, 20), (20, 0, 10, 20), (40, 0, 10, 20)))
    right = [(1, (0, 0, 10, 20), 0), (2, (20, 0, 10, 20), 0), (3, (40, 0, 10, 20), 0)]
    assert not any(misses(truth, right).values())
    merged = [(1, (0, 0, 10, 20), 0), (7, (18, 0, 34, 20), 0)]
    assert misses(truth, merged)["merged"] == 1 and misses(truth, merged)["lost"] == 0
    split = right[:1] + [(2, (20, 0, 4, 20), 0), (1, (26, 0, 4, 20), 0)] + right[2:]
    assert misses(truth, split)["split"] == 1
    lost = right[:2]
    assert misses(truth, lost)["lost"] == 1
    wrong = right[:2] + [(8, (40, 0, 10, 20), 0)]
    assert misses(truth, wrong) == {**dict.fromkeys(misses(truth, wrong), 0), "wrong_class": 1}
    assert misses(truth, right[::-1])["order"] == 1
    assert misses(truth, right + [(4, (80, 0, 10, 20), 0)])["extra"] == 1
