"""Train the example's network for one epoch on MNIST and archive it for TorchServe.

Run with the TorchServe venv's interpreter from the repository root (it needs torch, not Paddle):
  .venv-torchserve/bin/python -m bench.torchserve.prepare --data-dir ../shared/data/mnist --out DIR
Writes DIR/mnist.mar and prints one BENCH_JSON line (training time, test accuracy).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.common import emit
from bench.torchserve.net import Net
from train.mnist import IMAGE_SIZE, MEAN, STD, load_split, resolve_data_dir

HERE = Path(__file__).resolve().parent


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] -> the standardized float32 [N, 1, 28, 28] the handler also feeds."""
    return torch.from_numpy(((images.astype(np.float32) / 255.0 - MEAN) / STD)[:, None])


def train_one_epoch(model: Net, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int) -> None:
    # The example's recipe: Adadelta at lr 1.0, negative log-likelihood on log-probabilities.
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    order = np.random.default_rng(seed).permutation(len(labels))
    model.train()
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        loss = F.nll_loss(model(as_tensor(images[idx])), torch.from_numpy(labels[idx].astype(np.int64)))
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.inference_mode()
def accuracy(model: Net, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    pred = np.concatenate([model(as_tensor(images[i:i + 1000])).argmax(1).numpy() for i in range(0, len(labels), 1000)])
    return float((pred == labels).mean())


def archive(model: Net, out: Path, archiver: str) -> Path:
    """mnist.mar in out: net.py + the state dict, handler.py with transform.py and its numbers."""
    with tempfile.TemporaryDirectory(prefix="bench-mar-") as tmp:
        tmp = Path(tmp)
        torch.save(model.state_dict(), tmp / "net.pth")
        (tmp / "preprocess.json").write_text(json.dumps({"size": IMAGE_SIZE, "mean": MEAN, "std": STD}))
        shutil.copy(HERE / "transform.py", tmp / "transform.py")
        subprocess.run([archiver, "--model-name", "mnist", "--version", "1.0", "--model-file", str(HERE / "net.py"),
                        "--serialized-file", str(tmp / "net.pth"), "--handler", str(HERE / "handler.py"),
                        "--extra-files", f"{tmp / 'transform.py'},{tmp / 'preprocess.json'}",
                        "--export-path", str(out), "--force"], check=True)
    return out / "mnist.mar"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.torchserve.prepare", description=__doc__)
    p.add_argument("--data-dir", default=None, help="gzip IDX MNIST (default: $MNIST_DIR)")
    p.add_argument("--out", required=True, help="folder for mnist.mar (TorchServe's model store)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit-train", type=int, default=0, help="train on the first N images only (0: the whole epoch)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    data_dir = resolve_data_dir(args.data_dir)
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    n = args.limit_train or len(train)
    model = Net()
    t = time.perf_counter()
    train_one_epoch(model, train.images[:n], train.labels[:n], args.batch_size, args.seed)
    train_s = time.perf_counter() - t
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mar = archive(model, out, str(Path(sys.executable).parent / "torch-model-archiver"))
    emit({"mar": str(mar), "train_images": n, "train_s": round(train_s, 1), "test_accuracy": round(accuracy(model, test.images, test.labels), 4),
          "torch": torch.__version__, "torch_threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
