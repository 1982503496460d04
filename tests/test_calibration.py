"""Temperature scaling, calibration error, rejection thresholds and the open-set training pieces."""
import numpy as np
import pytest

from train import calibration as cal


def test_temperature_is_recovered_from_overconfident_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (4000, 10))
    p = cal.softmax(logits, 2.5)  # the truth is softmax(logits / 2.5)
    labels = (p.cumsum(1) > rng.uniform(size=(4000, 1))).argmax(1)
    t = cal.fit_temperature(logits, labels)
    assert 2.2 < t < 2.8
    before = cal.ece(cal.softmax(logits).max(1), cal.softmax(logits).argmax(1) == labels)
    after = cal.ece(cal.softmax(logits, t).max(1), cal.softmax(logits, t).argmax(1) == labels)
    assert after < 0.03 < before


def test_ece_and_reliability_bins():
    conf = np.array([0.95] * 100 + [0.55] * 100)
    correct = np.array([True] * 95 + [False] * 5 + [True] * 80 + [False] * 20)
    bins = cal.reliability(conf, correct)
    assert [b["n"] for b in bins] == [100, 100]
    assert cal.ece(conf, correct) == pytest.approx(0.5 * 0 + 0.5 * 0.25)


def test_threshold_flags_the_stated_share_of_digits():
    conf = np.random.default_rng(1).uniform(0.5, 1, 10000)
    t = cal.threshold_at_frr(conf, 0.02)
    assert (conf < t).mean() == pytest.approx(0.02, abs=0.002)


def test_negatives_are_seeded_and_pass_serving_preprocessing():
    from train import negatives as neg

    a, b = neg.make(40, seed=3), neg.make(40, seed=3)
    assert np.array_equal(a.images, b.images) and a.images.shape[1:] == (28, 28) and a.images.dtype == np.uint8
    assert not np.array_equal(a.images, neg.make(40, seed=4).images)
    assert set(a.kinds) <= set(neg.KINDS) and len(a.images) + sum(a.refused.values()) + sum(a.stroke_like.values()) == 40
    # no kept negative is a single straight stroke: that is a 1 to a writer
    assert min(neg.elongation(im) for im in a.images) >= neg.STROKE_LIKE
    # centred by serving's preprocessing: ink in the frame, the border empty as in MNIST
    assert (a.images[:, 0, :] == 0).mean() > 0.9 and a.images.max() > 200
    # drawn in shares (one per training process) and merged, they are the same pictures in the same order
    whole = neg.Negatives.merge([neg.make(40, seed=3, part=(r, 3)) for r in (2, 0, 1)])
    assert np.array_equal(whole.images, a.images) and list(whole.kinds) == list(a.kinds)
    assert whole.refused == a.refused and whole.stroke_like == a.stroke_like


def test_drawn_negatives_made_small_once_are_as_soft_as_mnist():
    from train import negatives as neg

    ink = np.zeros((neg.CANVAS, neg.CANVAS), np.float32)
    ink[20:90, 30:40] = ink[20:30, 30:80] = 1.0  # a crisp "Γ", 70 px tall, off centre
    small = neg.as_mnist(ink)
    rows, cols = np.flatnonzero(small.max(1) > 25), np.flatnonzero(small.max(0) > 25)
    assert small.shape == (28, 28) and small.dtype == np.uint8
    assert rows[-1] - rows[0] + 1 <= 20 and 18 <= rows[-1] - rows[0] + 1  # MNIST's 20x20 box
    ys, xs = np.nonzero(small)
    assert abs(np.average(ys, weights=small[ys, xs]) - 13.5) < 1 and abs(np.average(xs, weights=small[ys, xs]) - 13.5) < 1
    up = neg.small_once(ink, np.random.default_rng(0))
    assert 56 <= up.shape[0] < 2 * neg.CANVAS and up.shape[0] == up.shape[1] and 0 <= up.min() and up.max() <= 1
    soft = lambda a: ((a > 0.1) & (a < 0.9)).sum() / max((a >= 0.9).sum(), 1)  # edge pixels per core pixel
    assert soft(up) > 3 * soft(ink)
    # in the pool: only drawn kinds change, each from the drawing it had before (its own random stream;
    # the draws both pools kept are compared, as preprocessing may refuse a different few)
    a, b = neg.make(60, seed=5), neg.make(60, seed=5, small_share=1.0)
    same = {i: (x, k) for i, x, k in zip(a.index, a.images, a.kinds)}
    changed = [k for i, x, k in zip(b.index, b.images, b.kinds) if i in same and not np.array_equal(same[i][0], x)]
    kept = [k for i, x, k in zip(b.index, b.images, b.kinds) if i in same and np.array_equal(same[i][0], x)]
    assert changed and set(changed) <= set(neg.DRAWN) and not set(kept) & set(neg.DRAWN)


def test_digits_read_wrongly_are_seeded_and_what_the_reading_offers(mnist_dir):
    from serve.preprocess import read_gray
    from train import negatives as neg
    from train.mnist import load_split
    from train.openset import pool

    digits = load_split(mnist_dir, "train").images[:2000]
    aspect = lambda im: np.ptp(np.flatnonzero(im.max(0) > 64)) / max(np.ptp(np.flatnonzero(im.max(1) > 64)), 1)  # noqa: E731
    mnist = np.median([aspect(im) for im in digits[:200]])
    for kind in neg.FROM_DIGITS:
        a, b = neg.from_digits(kind, 60, seed=3, digits=digits), neg.from_digits(kind, 60, seed=3, digits=digits)
        assert np.array_equal(a.images, b.images) and set(a.kinds) == {kind} and a.images.shape[1:] == (28, 28)
        assert len(a.images) >= 15 and len(set(a.index)) + a.refused[kind] == 60  # a draw gives pictures or is refused
        whole = neg.Negatives.merge([neg.from_digits(kind, 60, seed=3, digits=digits, part=(r, 2)) for r in (1, 0)])
        assert np.array_equal(whole.images, a.images)
        assert min(neg.elongation(im) for im in a.images) >= neg.STROKE_LIKE
        if kind == "pairs":  # two digits in the 20-pixel box: wider than tall, where MNIST's digits are taller than wide
            assert np.median([aspect(im) for im in a.images]) > 1.3 > 1.0 > mnist
        else:  # part of a digit: narrower than the digit, fitted to the box by its height
            assert np.median([aspect(im) for im in a.images]) < 0.8 * mnist
    # two digits far apart are two groups: no reading takes them whole
    gray, boxes = neg.two_digits(digits, np.random.default_rng(0), 0.6)
    x0, x1 = boxes[0][0], boxes[1][0] + boxes[1][2]
    assert not [d for d in read_gray(gray, neg.SPEC) if d.box[0] <= x0 and d.box[0] + d.box[2] >= x1]
    # in the run's pool they come after the other kinds, which stay as they are without them
    drawn = pool(40, 1, 1.0)
    assert np.array_equal(pool(40, 1, 1.0, digits=digits), drawn)  # no shares, none of them
    mixed = pool(40, 1, 1.0, digits=digits, shares={"pairs": 0.5, "parts": 0.25})
    made = [neg.from_digits(k, n, seed=1 + 0x5EED, digits=digits).images for k, n in (("pairs", 20), ("parts", 10))]
    assert all(len(m) for m in made) and np.array_equal(mixed, np.concatenate([drawn, *made]))


def test_elongation_tells_a_bar_from_a_round_mark():
    from train import negatives as neg

    bar, ring = np.zeros((28, 28), np.uint8), np.zeros((28, 28), np.uint8)
    bar[4:24, 13:16] = 255  # a 1 as a plain stroke
    yy, xx = np.mgrid[:28, :28]
    ring[np.abs(np.hypot(yy - 14, xx - 14) - 8) < 1.5] = 255
    assert neg.elongation(bar) < 0.2 < neg.STROKE_LIKE < 0.9 < neg.elongation(ring)


def test_held_out_sources_are_disjoint_from_training():
    from train import negatives as neg

    train, held = neg.Sources.for_training(), neg.Sources.held_out()
    assert train.fonts and held.fonts and not set(train.fonts) & set(held.fonts)
    assert not set(train.photos) & set(held.photos) and not set(train.textures) & set(held.textures)


def test_outlier_exposure_loss_and_batch_mixing():
    import paddle

    from train import openset

    logits = paddle.to_tensor(np.array([[5.0] + [0.0] * 9, [0.0] * 10, [9.0] + [0.0] * 9], np.float32))
    digits_only = float(openset.loss(logits[:1], paddle.to_tensor([0])))
    # a negative with uniform logits costs log(10) - mean = log(10): the minimum of its term
    with_uniform = float(openset.loss(logits[:2], paddle.to_tensor([0, -1]), weight=1.0))
    with_peaked = float(openset.loss(logits[[0, 2]], paddle.to_tensor([0, -1]), weight=1.0))
    assert with_uniform == pytest.approx(digits_only + np.log(10), rel=1e-5)
    assert with_peaked > with_uniform

    x, y = np.zeros((8, 1, 28, 28), np.float32), np.arange(8)
    negs = np.full((20, 28, 28), 255, np.uint8)
    (step, mx, my), = openset.mix(iter([(0, x, y)]), negs, 0.25, seed=0, epoch=0)
    assert len(my) == 10 and (my == openset.NEGATIVE).sum() == 2 and sorted(my[my >= 0]) == list(range(8))
    assert np.allclose(mx[my == openset.NEGATIVE], mx[my == openset.NEGATIVE].max())  # the negatives' pixels


def test_the_not_a_digit_class_has_a_fixed_zero_logit():
    import paddle

    from train import openset

    logits = np.array([[8.0] + [0.0] * 9, [-6.0] * 10], np.float32)
    p = cal.probabilities(logits, reject_logit=0.0)
    assert p[0].sum() == pytest.approx(1 - 1 / (np.exp(8) + 10), rel=1e-6)  # a confident digit: little room left
    assert p[1].sum() == pytest.approx(10 / (10 + np.exp(6)), rel=1e-6)  # every digit logit under 0: not a digit
    loss = float(openset.extra_class_loss(paddle.to_tensor(logits), paddle.to_tensor([0, openset.NEGATIVE])))
    assert loss == pytest.approx(-np.log([p[0][0], 1 - p[1].sum()]).mean(), rel=1e-5)


def test_threshold_counts_digits_preprocessing_refused():
    from train.calibration import threshold_at_frr as threshold_for

    conf = np.linspace(0.5, 1.0, 1000)
    thr = threshold_for(conf, refused=10, frr=0.025)  # 25.25 of 1010 to reject, 10 already refused
    assert (conf < thr).sum() == pytest.approx(15, abs=1)
    assert threshold_for(conf, refused=40, frr=0.025) == conf.min()  # refusals alone exceed the rate


def test_reject_logit_is_the_most_rejecting_within_the_ece_budget():
    from export import calibrate as ec

    rng = np.random.default_rng(5)

    def digits(n):  # calibrated at T = 2 with no "not a digit" mass; low logits, so a large b steals from them
        z = rng.normal(-4, 4, (n, 10))
        y = (cal.softmax(z, 2.0).cumsum(1) > rng.uniform(size=(n, 1))).argmax(1)
        return ec.Seen(z, np.array(["k"] * n), {"k": 0}, {"k": 0}, y)

    a, b = digits(20000), digits(3000)
    negs = ec.Seen(rng.normal(-8, 2, (1000, 10)), np.array(["n"] * 1000), {"n": 0}, {"n": 0})
    t, logit, table = ec.fit_reject_logit(a, b, negs)
    chosen = next(r for r in table if r["reject_logit"] == logit)
    eligible = [r for r in table if r["ece_half_a"] <= ec.ECE_BUDGET]
    assert chosen in eligible and 1.8 < t < 2.2
    assert chosen["non_digits_rejected"] == max(r["non_digits_rejected"] for r in eligible)
    assert chosen["non_digits_rejected"] > table[-1]["non_digits_rejected"] + 0.1  # b = -12: little room for "not a digit"
    assert table[0]["non_digits_rejected"] > chosen["non_digits_rejected"]  # b = 0 rejects more, but is miscalibrated


def test_tuning_renderings_are_seeded_uploads_that_serving_reads(mnist_dir):
    from PIL import Image
    import io

    from train import renderings
    from train.mnist import load_split

    digits = load_split(mnist_dir, "test").images[: 2 * len(renderings.KINDS)]
    a, kinds = renderings.render(digits, seed=1)
    assert a == renderings.render(digits, seed=1)[0] and a != renderings.render(digits, seed=2)[0]
    assert set(kinds) == set(renderings.KINDS)
    opened = {k: Image.open(io.BytesIO(data)) for k, data in zip(kinds, a)}
    assert opened["canvas"].mode == "RGBA" and opened["camera"].format == "JPEG"
    assert opened["sideways"].getexif().get(0x0112) in (3, 6, 8)
    images, refused = renderings.prepared(a)
    assert refused.sum() <= 1 and images.shape == (len(a) - refused.sum(), 28, 28)
    negs, neg_kinds = renderings.negative_uploads(12, seed=3)
    assert negs == renderings.negative_uploads(12, seed=3)[0] and len(negs) == len(neg_kinds) == 12
