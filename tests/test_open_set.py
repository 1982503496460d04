"""The committed model knows when a picture is not a digit, and its confidence means what it says.

Judged on pictures nothing was trained or tuned on: non-digits from held-out fonts, photos, seeds
and two kinds of drawing no training code makes (tests/nondigits.py), and MNIST *test* digits drawn
as every kind of upload (tests/uploads.py), all through /predict's own preprocessing and the
manifest's threshold (serve/rejection.py).
"""
import numpy as np
import pytest

from tests import nondigits
from tests.uploads import KINDS

DIGITS_PER_KIND = 150
NON_DIGITS_PER_KIND = 40
# The target is 90% of non-digits flagged or refused. Version 7 (trained on digits as /read
# cuts them out of rows too) flags 93.1% of these 320 and 91.25% of tests/nondigits.py's 800,
# version 6 (all its drawn non-digits made 28x28 once) 90.6% and 88.6-88.9%, version 5 (three in
# four) about 88%, version 4 (half) 82-83%, version 3 77-80%, version 2 about 62%: the README says
# so. This floor guards what the newest version reaches (the plain model of version 1 flagged about
# 1 in 5, the issue says).
NON_DIGITS_FLAGGED_TARGET = 0.90
NON_DIGITS_FLAGGED_FLOOR = 0.89


@pytest.fixture(scope="module")
def model(committed_model):
    from serve.model_store import load_manifest
    from serve.predictor import Predictor
    from serve.preprocess import Spec

    manifest = load_manifest(committed_model)
    return Predictor(committed_model, manifest), manifest, Spec.from_manifest(manifest)


def _answers(model, pictures):
    """(confidence, predicted index, flagged) per picture, as /predict answers it (serve/reading.py's
    one_digit_each, the classifier's own walk); refused pictures are flagged with confidence 0."""
    from serve.errors import ApiError, NoDigit, SeveralDigits
    from serve.preprocess import candidates
    from serve.reading import one_digit_each
    from serve.rejection import flags

    predictor, manifest, spec = model
    found = []
    for data in pictures:
        try:
            found.append(candidates(data, spec))
        except (NoDigit, SeveralDigits) as e:  # refused before the model: flagged
            found.append(e)
    answers = one_digit_each(found, predictor)
    refused = np.array([isinstance(a, ApiError) for a in answers])
    conf = np.array([0.0 if r else float(a[0].max()) for r, a in zip(refused, answers)])
    pred = np.array([-1 if r else int(a[0].argmax()) for r, a in zip(refused, answers)])
    flagged = np.array([r or flags(c, manifest, None)[0] for r, c in zip(refused, conf)])
    return conf, pred, flagged


@pytest.fixture(scope="module")
def digits(model, mnist_dir):
    from train.mnist import load_split

    test = load_split(mnist_dir, "test")
    idx = np.random.default_rng(0xD161).choice(len(test), DIGITS_PER_KIND * len(KINDS), replace=False)
    pictures, labels = [], test.labels[idx]
    for j, (i, kind) in enumerate(zip(idx, sorted(KINDS) * DIGITS_PER_KIND)):
        pictures.append(KINDS[kind](test.images[i], np.random.default_rng([0xD161, j])))
    conf, pred, flagged = _answers(model, pictures)
    return conf, pred == labels, flagged


@pytest.fixture(scope="module")
def pictures():
    return nondigits.uploads(NON_DIGITS_PER_KIND)


@pytest.fixture(scope="module")
def non_digits(model, pictures):
    _, _, flagged = _answers(model, [p for _, p in pictures])
    kinds = np.array([k for k, _ in pictures])
    for kind in dict.fromkeys(kinds):
        print(f"{kind}: {flagged[kinds == kind].mean():.3f} flagged")
    return kinds, flagged


def test_the_model_is_trained_to_reject(model):
    _, manifest, _ = model
    assert manifest["rejection"]["open_set"] is True
    assert 0 < manifest["rejection"]["threshold"] < 1 and manifest["calibration"]["temperature"] > 0


def test_non_digits_are_flagged(non_digits):
    kinds, flagged = non_digits
    print(f"non-digits flagged: {flagged.mean():.3f} of {len(flagged)} (target {NON_DIGITS_FLAGGED_TARGET:.0%})")
    assert flagged.mean() >= NON_DIGITS_FLAGGED_FLOOR


def test_the_service_answers_non_digits_as_measured(committed_model, pictures, non_digits):
    """Through /predict itself: each held-out non-digit is answered not_a_digit, or refused with 422
    no_digit / several_digits, exactly where the measurement above says it is flagged."""
    from serve.app import create_app

    client = create_app({"model_dir": str(committed_model)}).test_client()
    answered = []
    for _, data in pictures:
        resp = client.post("/predict", data=data, content_type="image/png" if data[:4] == b"\x89PNG" else "image/jpeg")
        if resp.status_code == 422:
            assert resp.json["error"]["code"] in ("no_digit", "several_digits")
            answered.append(True)
        else:
            assert resp.status_code == 200 and resp.json["not_a_digit"] is resp.json["uncertain"]
            answered.append(resp.json["not_a_digit"])
    _, flagged = non_digits
    assert answered == flagged.tolist()
    print(f"non-digits flagged or refused by /predict: {np.mean(answered):.3f} of {len(answered)}")
    assert np.mean(answered) >= NON_DIGITS_FLAGGED_FLOOR


def test_real_digits_are_rarely_flagged(digits):
    _, _, flagged = digits
    print(f"digits flagged: {flagged.mean():.4f} of {len(flagged)}")
    assert flagged.mean() <= 0.03


def test_unflagged_answers_are_right(digits):
    _, correct, flagged = digits
    print(f"unflagged accuracy: {correct[~flagged].mean():.4f} of {(~flagged).sum()}")
    assert correct[~flagged].mean() >= 0.995


def test_confidence_is_calibrated_over_real_uploads(digits):
    from train.calibration import ece

    conf, correct, _ = digits
    e = ece(conf, correct)
    print(f"ECE {e:.4f}, mean confidence {conf.mean():.4f}, accuracy {correct.mean():.4f}")
    assert e <= 0.02


@pytest.mark.parametrize("below, flagged", [(1.01, True), (0.0, False)])
def test_every_protocol_gives_the_same_explicit_answer(committed_model, mnist_dir, below, flagged):
    """UNCERTAIN_BELOW overrides the manifest's threshold; a flagged answer from an open-set model is
    `"digit": null, "not_a_digit": true` on /predict and a 'not_a_digit' label in v2's classification."""
    import base64

    from serve.app import create_app
    from tests.images import as_upload, encode
    from train.mnist import load_split

    digit = load_split(mnist_dir, "test").images[0]  # a 7
    png = encode(as_upload(digit))
    client = create_app({"model_dir": str(committed_model), "uncertain_below": below}).test_client()
    body = client.post("/predict", data=png, content_type="image/png").json
    assert body["uncertain"] is flagged and body["not_a_digit"] is flagged
    assert (body["digit"] is None) is flagged and body["top_k"][0]["digit"] == 7  # the closest digit stays visible

    manifest = client.get("/v1/models").json["models"][0]
    out = manifest["output"]["name"]
    v2 = client.post(f"/v2/models/{manifest['name']}/infer", json={
        "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(png).decode()]}],
        "outputs": [{"name": out, "parameters": {"classification": 2}}]}).json
    top, second = v2["outputs"][0]["data"]
    assert top.split(":")[1] == "7" and top.endswith(":not_a_digit") is flagged and second.count(":") == 2
