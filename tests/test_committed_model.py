"""The model shipped in models/: intact, honest about its accuracy, produced by this project."""
import json

import numpy as np


def test_manifest_checksums_match_files(committed_model):
    from serve.model_store import load_manifest, sha256_file

    manifest = load_manifest(committed_model, verify=True)
    assert set(manifest["sha256"]) >= {manifest["files"]["model"], manifest["files"]["params"]}
    for name, digest in manifest["sha256"].items():
        assert sha256_file(committed_model / name) == digest


def test_accuracy_on_mnist_test_matches_manifest(committed_model, mnist_dir):
    from serve.model_store import load_manifest
    from serve.predictor import Predictor
    from train.data import normalize
    from train.mnist import load_split

    manifest = load_manifest(committed_model)
    test = load_split(mnist_dir, "test")
    assert test.standard, "the committed model is checked against the published MNIST test set"
    predictor = Predictor(committed_model, manifest)
    x = normalize(test.images)
    pred = np.concatenate([predictor(x[i : i + 1000]) for i in range(0, len(x), 1000)]).argmax(1)
    acc = float((pred == test.labels).mean())
    assert abs(acc - manifest["metrics"]["test_acc"]) <= 0.001
    assert acc >= 0.985


def test_manifest_says_how_it_was_made(committed_model):
    manifest = json.loads((committed_model / "manifest.json").read_text())
    assert "make train" in manifest["produced_by"] and "make export" in manifest["produced_by"]
    assert manifest["source"]["data"]["standard_mnist"] is True
    assert manifest["source"]["data"]["train"] + manifest["source"]["data"]["val"] == 60000
    assert manifest["source"]["training_config"]["limit_train"] == 0
