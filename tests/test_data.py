"""MNIST reading refuses bad files with a message naming the file; the split keeps test clean."""
import gzip
import shutil
import struct

import numpy as np
import pytest

from tests.synth import write_dataset, write_idx_images, write_idx_labels
from train.data import Augment, epoch_order, stratified_split, train_batches
from train.mnist import COUNTS, DataError, LABELS_MAGIC, load_split


@pytest.fixture()
def data(tmp_path):
    return write_dataset(tmp_path / "d", n_train=100, n_test=50)


def rewrite(path, raw: bytes):
    with gzip.open(path, "wb") as f:
        f.write(raw)


def raw_of(path) -> bytes:
    with gzip.open(path, "rb") as f:
        return f.read()


def test_real_mnist_is_recognised_as_standard(mnist_dir):
    train = load_split(mnist_dir, "train")
    assert train.standard and len(train) == COUNTS["train"]
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_synthetic_files_load_as_non_standard(data):
    split = load_split(data, "train")
    assert not split.standard and len(split) == 100


@pytest.mark.parametrize("problem, mutate, message", [
    ("bad magic", lambda raw: struct.pack(">I", 0x0803 + 1) + raw[4:], "bad magic number"),
    ("truncated", lambda raw: raw[:-100], "truncated or padded"),
    ("short header", lambda raw: raw[:10], "truncated header"),
    ("wrong size", lambda raw: raw[:8] + struct.pack(">II", 32, 32) + raw[16:], "expected 28x28"),
])
def test_corrupt_image_file_is_refused_by_name(data, problem, mutate, message):
    path = data / "train-images-idx3-ubyte.gz"
    rewrite(path, mutate(raw_of(path)))
    with pytest.raises(DataError, match=message) as err:
        load_split(data, "train")
    assert str(path) in str(err.value)


def test_label_out_of_range_is_refused(data):
    path = data / "train-labels-idx1-ubyte.gz"
    labels = np.frombuffer(raw_of(path), np.uint8, offset=8).copy()
    labels[7] = 11
    write_idx_labels(path, labels)
    with pytest.raises(DataError, match="label 11 at record 7 is outside 0-9"):
        load_split(data, "train")


def test_count_mismatch_is_refused(data):
    write_idx_labels(data / "train-labels-idx1-ubyte.gz", np.zeros(99, np.uint8))
    with pytest.raises(DataError, match="100 images but .* 99 labels"):
        load_split(data, "train")


def test_not_gzip_and_missing_files_are_refused(data):
    (data / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_split(data, "test")
    (data / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="file not found"):
        load_split(data, "test")


def test_full_size_file_that_is_not_mnist_is_refused(tmp_path, mnist_dir):
    # The full test set with one flipped pixel: the published sha256 no longer matches.
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, tmp_path / name)
    images = np.frombuffer(raw_of(tmp_path / "t10k-images-idx3-ubyte.gz"), np.uint8, offset=16).reshape(-1, 28, 28).copy()
    images[0, 0, 0] ^= 1
    write_idx_images(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    with pytest.raises(DataError, match="sha256 differs from the published MNIST file"):
        load_split(tmp_path, "test")


def test_training_cli_reports_data_errors_without_a_traceback(data, tmp_path):
    import subprocess
    from tests.conftest import PYTHON, REPO

    (data / "train-labels-idx1-ubyte.gz").write_bytes(b"junk")
    proc = subprocess.run([PYTHON, "-m", "train", "--data-dir", str(data), "--runs-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "data error:" in proc.stderr and "train-labels-idx1-ubyte.gz" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_stratified_split_is_seeded_disjoint_and_proportional(mnist_dir):
    labels = load_split(mnist_dir, "train").labels
    train, val = stratified_split(labels, 5000, seed=1)
    assert len(val) == 5000 and len(train) == 55000
    assert not set(train) & set(val)
    share = np.bincount(labels[val], minlength=10) / 5000
    assert np.abs(share - np.bincount(labels, minlength=10) / len(labels)).max() < 0.001
    assert np.array_equal(stratified_split(labels, 5000, seed=1)[1], val)
    assert not np.array_equal(stratified_split(labels, 5000, seed=2)[1], val)


def test_batches_depend_only_on_seed_epoch_and_step(data):
    split = load_split(data, "train")
    kw = dict(batch_size=16, seed=3, epoch=1, augment=Augment())
    full = list(train_batches(split.images, split.labels, **kw))
    resumed = list(train_batches(split.images, split.labels, start_step=4, **kw))
    assert len(full) == 100 // 16  # the last short batch is dropped
    for (s1, x1, y1), (s2, x2, y2) in zip(full[4:], resumed):
        assert s1 == s2 and np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(epoch_order(100, 3, 1), epoch_order(100, 3, 2))


def test_augmentation_starts_at_its_epoch(data):
    split = load_split(data, "train")

    def first_batch(epoch, augment):
        kw = dict(batch_size=16, seed=3, epoch=epoch, augment=augment, augment_from_epoch=1)
        return next(iter(train_batches(split.images, split.labels, **kw)))[1]

    assert np.array_equal(first_batch(0, Augment()), first_batch(0, None))  # before it: plain digits
    assert not np.array_equal(first_batch(1, Augment()), first_batch(1, None))


def test_augmentation_keeps_digits_plausible(mnist_dir):
    split = load_split(mnist_dir, "test")
    x = split.images[:200]
    out = Augment().apply(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.uint8
    assert not np.array_equal(out, x)
    ink_ratio = out.astype(float).sum((1, 2)) / x.astype(float).sum((1, 2))
    assert 0.7 < np.median(ink_ratio) < 1.4  # distorted, not erased or smeared
