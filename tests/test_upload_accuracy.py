"""Real uploads must be recognised as well as MNIST itself: the committed model, on MNIST test digits
turned into scans, photos, canvas drawings, thin-pen and EXIF-rotated pictures, through /predict's
own preprocessing."""
import numpy as np
import pytest

from tests.uploads import KINDS

N = 500  # test digits per kind: a fixed, seeded sample


@pytest.fixture(scope="module")
def setup(committed_model, mnist_dir):
    from serve.model_store import load_manifest
    from serve.predictor import Predictor
    from serve.preprocess import Spec
    from train.data import normalize
    from train.mnist import load_split

    manifest = load_manifest(committed_model)
    predictor = Predictor(committed_model, manifest)
    test = load_split(mnist_dir, "test")
    idx = np.random.default_rng(7).choice(len(test), N, replace=False)
    images, labels = test.images[idx], test.labels[idx]
    mnist_acc = float((predictor(normalize(images)).argmax(1) == labels).mean())
    return predictor, Spec.from_manifest(manifest), images, labels, mnist_acc


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_upload_kind_is_recognised_within_one_point_of_mnist(kind, setup):
    from serve.preprocess import prepare

    predictor, spec, images, labels, mnist_acc = setup
    rng = np.random.default_rng(11)
    x = np.stack([prepare(KINDS[kind](img, rng), spec).tensor for img in images])
    acc = float((predictor(x).argmax(1) == labels).mean())
    print(f"{kind}: {acc:.4f} (MNIST as is: {mnist_acc:.4f})")
    assert acc >= mnist_acc - 0.01
