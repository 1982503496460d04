"""The same networks in PyTorch, trained the same way, for a like-for-like speed reference.

Run with an interpreter that has torch (it is not a project dependency):
  /path/to/torch-venv/bin/python bench/torch_ref.py --model cnn --threads 2
Prints one BENCH_JSON line. Imports nothing from the project, so it runs outside its venv.
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin, cout, k):
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def build(name):
    if name == "cnn":  # train/models.py CNN
        return nn.Sequential(*conv_bn(1, 32, 5), nn.MaxPool2d(2, 2), *conv_bn(32, 64, 3), nn.MaxPool2d(2, 2),
                             *conv_bn(64, 128, 3), nn.MaxPool2d(2, 2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(128 * 9, 10))
    if name == "lenet":  # train/models.py LeNet (the course's CNN)
        return nn.Sequential(nn.Conv2d(1, 20, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Conv2d(20, 20, 5, padding=2),
                             nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(), nn.Linear(20 * 49, 10))
    raise SystemExit(f"unknown model {name}")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="cnn")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    batches = [(torch.from_numpy(rng.standard_normal((args.batch_size, 1, 28, 28), dtype=np.float32)),
                torch.from_numpy(rng.integers(0, 10, args.batch_size))) for _ in range(8)]
    times = []
    for i in range(args.warmup + args.steps):
        x, y = batches[i % len(batches)]
        t = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        float(loss.detach())
        times.append(time.perf_counter() - t)
    steps = np.array(times[args.warmup:])
    print("BENCH_JSON " + json.dumps({
        "framework": f"torch {torch.__version__}", "model": args.model, "threads": args.threads, "batch_size": args.batch_size,
        "steps": len(steps), "images_per_s": round(args.batch_size * len(steps) / steps.sum(), 1),
        "images_per_s_median_step": round(args.batch_size / float(np.median(steps)), 1),
        "mkldnn": torch.backends.mkldnn.is_available()}))


if __name__ == "__main__":
    main()
