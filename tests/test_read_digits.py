"""train/read_digits.py: training digits as /read cuts them out of written rows, with their labels."""
import numpy as np

from train import read_digits as rd


def test_a_reading_belongs_to_the_one_digit_it_covers():
    boxes = [(10, 5, 30, 40), (45, 5, 30, 40), (80, 5, 20, 40)]  # three digits in a row
    assert rd.owner((9, 0, 32, 45), boxes) == 0  # the first, whole
    assert rd.owner((44, 0, 33, 45), boxes) == 1  # the second, with a sliver of the gap
    assert rd.owner((36, 0, 41, 45), boxes) == 1  # reaching 4 px (of 30) back into the first: still the second
    assert rd.owner((10, 0, 65, 45), boxes) == -1  # two digits read as one
    assert rd.owner((10, 0, 15, 45), boxes) == -1  # half of a digit: a part, not the digit
    assert rd.owner((30, 0, 47, 45), boxes) == -1  # a third of its neighbour along: too much of it


def test_a_wrong_reading_is_a_miss_when_it_takes_two_digits_together():
    boxes = [(10, 5, 30, 40), (45, 5, 30, 40), (80, 5, 20, 40)]
    assert rd.is_miss((10, 0, 65, 45), boxes)  # two digits taken together
    assert rd.is_miss((25, 0, 35, 45), boxes)  # half of each of two neighbours
    assert not rd.is_miss((9, 0, 32, 45), boxes)  # a digit's own reading
    assert not rd.is_miss((36, 0, 41, 45), boxes)  # a digit with a sliver of its neighbour
    assert not rd.is_miss((10, 0, 15, 45), boxes)  # half of one digit: a piece, not taught as a miss


def test_a_one_is_never_taught_as_a_miss():
    line = np.zeros((28, 28), np.uint8)
    for t in range(4, 24):  # a slanted stroke
        line[t, 10 + t // 3 : 12 + t // 3] = 255
    ring = np.zeros((28, 28), np.uint8)
    yy, xx = np.mgrid[0:28, 0:28]
    ring[np.abs(np.hypot(yy - 14, xx - 14) - 8) < 1.5] = 255  # a "0"
    assert rd.one_stroke(line) and not rd.one_stroke(ring)


def test_wrong_readings_come_from_the_same_rows_and_leave_the_digits_as_they_were(mnist_dir):
    from train.mnist import load_split

    train = load_split(mnist_dir, "train")
    digits, labels = train.images[:3000], train.labels[:3000]
    plain, both = rd.make(40, 5, digits, labels), rd.make(40, 5, digits, labels, misses=True)
    assert np.array_equal(plain.images, both.images) and np.array_equal(plain.labels, both.labels)
    assert len(plain.misses) == 0 and 1 <= len(both.misses) <= 40 * 6 and both.misses.shape[1:] == (28, 28)
    assert not any(rd.one_stroke(m) for m in both.misses)
    whole = rd.ReadDigits.merge([rd.make(40, 5, digits, labels, part=(r, 2), misses=True) for r in (1, 0)])
    assert np.array_equal(whole.misses, both.misses) and np.array_equal(whole.miss_index, both.miss_index)


def test_rows_are_seeded_and_split_over_processes_like_negatives(mnist_dir):
    from train.mnist import load_split

    train = load_split(mnist_dir, "train")
    digits, labels = train.images[:3000], train.labels[:3000]
    a, b = rd.make(40, 5, digits, labels), rd.make(40, 5, digits, labels)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(rd.make(40, 6, digits, labels).images[:10], a.images[:10])
    # 2-4 digits a row, most read as themselves: more than one per row, never more than a row holds
    assert 40 < len(a.images) <= 4 * 40 and a.images.shape[1:] == (28, 28) and set(a.labels) <= set(range(10))
    assert np.bincount(a.index).max() <= 4  # a digit offered in several readings of its group is kept once
    whole = rd.ReadDigits.merge([rd.make(40, 5, digits, labels, part=(r, 2)) for r in (1, 0)])
    assert np.array_equal(whole.images, a.images) and np.array_equal(whole.labels, a.labels)


def test_a_row_holds_touching_and_separate_digits_on_lined_paper(mnist_dir):
    from train.mnist import load_split

    train = load_split(mnist_dir, "train")
    touching = lined = 0
    for i in range(60):
        gray, boxes, labels = rd.row(train.images[:500], train.labels[:500], np.random.default_rng(i))
        assert gray.dtype == np.uint8 and len(boxes) == len(labels) and 2 <= len(labels) <= 4
        assert all(x + w <= gray.shape[1] and y + h <= gray.shape[0] for x, y, w, h in boxes)
        touching += any(b[0] < a[0] + a[2] for a, b in zip(boxes, boxes[1:]))
        # paper lines cross the whole width: a row of pixels (away from the digits) darker than the paper
        above = gray[: min(y for _, y, _, _ in boxes)].astype(np.float64)
        lined += above.size > 0 and bool((np.median(above, axis=1) < np.median(above) - 15).any())
    assert 5 <= touching <= 40 and 15 <= lined <= 55


def test_labels_are_the_digits_written(mnist_dir, committed_model):
    """The committed model, which never trained on these, reads nearly all of them as their labels:
    the labels follow the digits through the reading (a wrong match would read ~10%)."""
    from serve.model_store import load_manifest, resolve
    from serve.predictor import Predictor
    from train.data import normalize
    from train.mnist import load_split

    folder = resolve(str(committed_model))
    predictor = Predictor(folder, load_manifest(folder))
    train = load_split(mnist_dir, "train")
    got = rd.make(120, 11, train.images, train.labels)
    right = predictor(normalize(got.images)).argmax(1) == got.labels
    assert len(got.labels) >= 250 and right.mean() >= 0.95, (len(got.labels), right.mean())


def test_digits_read_from_rows_join_batches_with_their_labels():
    from train import openset

    x, y = np.zeros((8, 1, 28, 28), np.float32), np.arange(8)
    images, labels = np.full((20, 28, 28), 255, np.uint8), np.full(20, 7)
    (_, mx, my), = openset.mix(iter([(0, x, y)]), images, 0.25, seed=0, epoch=0, labels=labels, salt=openset.READ_SALT)
    assert len(my) == 10 and (my == 7).sum() == 3 and not (my < 0).any()  # two added 7s beside the batch's own
    assert np.allclose(mx[mx.reshape(10, -1).max(1) > 0], mx.max())
    # its own stream: the same batch mixed with the non-digits' salt takes other places
    (_, _, ny), = openset.mix(iter([(0, x, y)]), images, 0.25, seed=0, epoch=0, labels=labels)
    assert not np.array_equal(np.flatnonzero(my == 7), np.flatnonzero(ny == 7))


def test_the_default_model_reads_rows_and_a_config_saved_before_does_not():
    from train.config import TrainConfig

    assert TrainConfig().resolved().read_digits == 0.125
    assert TrainConfig(model="lenet").resolved().read_digits == 0.0  # the course's table trains as the course did
    assert TrainConfig.from_dict({"model": "cnn"}).resolved().read_digits == 0.0
    assert TrainConfig.from_dict({"model": "cnn", "read_digits": 0.0625}).resolved().read_digits == 0.0625
    assert TrainConfig().resolved().read_misses == 0.0  # measured, not the default (README)
    assert TrainConfig.from_dict({"model": "cnn", "read_digits": 0.125}).resolved().read_misses == 0.0  # saved before


def test_a_line_drawn_under_a_digit_touches_it_and_leaves_its_label(mnist_dir):
    """Underlined rows: the line lies under one digit's lowest ink (touching it or 1-2 px under it),
    reaching out past its side; the digits read from such rows keep their labels, and rows drawn
    without underlines are the rows before, bit for bit."""
    from train.mnist import load_split

    train = load_split(mnist_dir, "train")
    digits, labels = train.images[:3000], train.labels[:3000]
    plain = rd.make(40, 5, digits, labels)
    assert np.array_equal(plain.images, rd.make(40, 5, digits, labels, underlines=0.0).images)
    for i in range(20):
        ink = np.zeros((200, 300), np.float32)
        ink[50:110, 100:140] = 1.0  # a digit's ink: its lowest row is 109
        rng = np.random.default_rng(i)
        rd.underline(ink, (100, 50, 40, 60), 60, rng)
        below = ink[110:] > 0.5
        assert below.any() and not ink[:100, :100].any() and not ink[:100, 140:].any()  # nothing drawn high up
        rows, cols = np.flatnonzero(below.any(1)), np.flatnonzero(below.any(0))
        assert rows[0] <= 4 and rows[-1] <= 16  # touching, or just under it; thin
        assert cols[0] <= 100 - 10 or cols[-1] >= 140 + 10  # reaching out past a side (0.2 of the height at least)
    under = rd.make(40, 5, digits, labels, underlines=1.0)
    assert 40 < len(under.images) <= 4 * 40 and set(under.labels) <= set(range(10))
    assert not np.array_equal(under.images[:10], plain.images[:10])
