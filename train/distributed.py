"""Collective data-parallel training on Paddle's own engine; a no-op in a single process.

Start it with Paddle's launcher, which runs one copy of the trainer per device and tells each its
place through the environment (PADDLE_TRAINERS_NUM, PADDLE_TRAINER_ID, PADDLE_TRAINER_ENDPOINTS):

    python -m paddle.distributed.launch --nproc_per_node 2 train/__main__.py --model lenet ...

init_parallel_env() then joins the processes: NCCL on GPUs, gloo on CPUs. Every rank builds the
same seeded model (DataParallel also broadcasts rank 0's weights), reads the same deterministic
epoch order and takes its own contiguous slice of every global batch, so the union of the ranks'
slices is exactly the single-process batch. paddle.DataParallel averages the gradients across ranks
during backward, so every rank applies the same update and holds the same weights: with the same
--batch-size (the global batch), N processes follow the single-process run up to float rounding
(batch-norm statistics are per rank, as in any data-parallel run without SyncBatchNorm).

Only rank 0 writes (config, metrics, checkpoints, result, report); every rank reads the same
checkpoint on resume. A stop request (Ctrl-C, SIGTERM from the launcher) reaching any rank is
agreed on at the next step, so all ranks stop at the same step and nobody waits on a missing peer.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.distributed as pdist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise ValueError(f"--batch-size {batch_size} (the global batch) must be a multiple of the "
                             f"{self.world_size} processes, so every rank takes an equal slice")

    def wrap(self, model):
        """The model to train: DataParallel all-reduces (averages) gradients during backward."""
        return paddle.DataParallel(model) if self.enabled else model

    def part(self, batch_size: int) -> slice:
        """This rank's contiguous slice of every global batch (what shard() keeps), for train_batches."""
        n = batch_size // self.world_size
        return slice(self.rank * n, self.rank * n + n)

    def shard(self, batches):
        """This rank's contiguous slice of every global (step, x, y) batch."""
        for step, x, y in batches:
            p = self.part(len(y))
            yield step, x[p], y[p]

    def share_of(self, n: int) -> slice:
        """This rank's contiguous share of n records to evaluate (shares differ by at most one)."""
        lo, hi = (n * r // self.world_size for r in (self.rank, self.rank + 1))
        return slice(lo, hi)

    def same_state(self, layer) -> None:
        """Rank 0's state of `layer` (weights and batch-norm statistics) on every rank. Gradients are
        averaged, so the weights agree, but each rank's running statistics (Paddle keeps them as
        parameters that take no gradient) come from its own slices: a model evaluated in shares
        must be rank 0's on every share (what rank 0 saves, and resume loads everywhere)."""
        if self.enabled:
            with paddle.no_grad():
                for tensor in layer.state_dict().values():
                    pdist.broadcast(tensor, src=0)

    def all_sum(self, values) -> np.ndarray:
        """float64 values summed over all ranks, on every rank."""
        values = np.asarray(values, np.float64)
        if not self.enabled:
            return values
        t = paddle.to_tensor(values)
        pdist.all_reduce(t, op=pdist.ReduceOp.SUM)
        return t.numpy()

    def rank_seed(self, seed: int) -> int:
        """The dropout seed of this rank: the run's seed on rank 0, a distinct one on the others.

        Each rank reseeds Paddle's RNG every step from (seed, epoch, step); with one seed for all,
        row i of every rank's slice would get the same dropout mask.
        """
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0] & 0x7FFFFFFF)

    def meets(self, global_step: int, log_every: int) -> bool:
        """Whether the ranks meet (sync_step) after this 1-based global step: on the logged steps only,
        since a meeting every step made each step wait for the slower rank (~3% of a step); one
        process meets every step, for free, so a signal stops it at once."""
        return not self.enabled or global_step % log_every == 0

    def sync_step(self, record: dict, signum: int) -> int:
        """Make a step record global (mean loss and accuracy, summed images/s) and agree on stopping.

        One small all-reduce per step; returns the signal number any rank has seen (0: none).
        """
        if not self.enabled:
            return signum
        loss, acc, ips, sig_sum, signalled = self.all_sum(
            [record["loss"], record["acc"], record["images_per_s"], signum, signum > 0]).tolist()
        record.update(loss=loss / self.world_size, acc=acc / self.world_size, images_per_s=ips)
        # Ranks usually see the same signal (the launcher sends each SIGTERM; Ctrl-C reaches all).
        return signum or (round(sig_sum / signalled) if signalled else 0)

    def agree_signal(self, signum: int) -> int:
        """The signal number if any rank has seen one, else 0 (for checks outside the step loop)."""
        if not self.enabled:
            return signum
        t = paddle.to_tensor(np.array([signum], np.int64))
        pdist.all_reduce(t, op=pdist.ReduceOp.MAX)
        return signum or int(t.numpy()[0])

    def reduce_epoch(self, stats: dict) -> dict:
        """Epoch statistics over all ranks' records: exact means, total images, the slowest rank's time."""
        if not self.enabled:
            return stats
        loss_sum, correct, images = self.all_sum(
            [stats["loss"] * stats["images"], stats["acc"] * stats["images"], stats["images"]]).tolist()
        s = paddle.to_tensor(np.array([stats["seconds"]], np.float64))
        pdist.all_reduce(s, op=pdist.ReduceOp.MAX)
        seconds = float(s.numpy()[0])
        return {**stats, "loss": loss_sum / max(images, 1), "acc": correct / max(images, 1), "images": int(images),
                "seconds": seconds, "images_per_s": images / max(seconds, 1e-9)}

    def gather(self, value) -> list:
        """Every rank's value (any picklable object), in rank order, on every rank."""
        if not self.enabled:
            return [value]
        out: list = []
        pdist.all_gather_object(out, value)
        return out

    def share(self, value):
        """Rank 0's value (any picklable object), on every rank."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        pdist.broadcast_object_list(box, src=0)
        return box[0]


_dist: Dist | None = None


def world_size_from_env() -> int:
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def setup(device: str = "cpu") -> Dist:
    """Join the launcher's process group once per process (no-op without the launcher)."""
    global _dist
    if _dist is not None:
        return _dist
    if world_size_from_env() <= 1:
        _dist = Dist()
        return _dist
    if device == "cpu":
        # A GPU build would otherwise pick NCCL; --device cpu means gloo over TCP.
        os.environ.setdefault("PADDLE_DISTRI_BACKEND", "gloo")
    pdist.init_parallel_env()
    _dist = Dist(rank=pdist.get_rank(), world_size=pdist.get_world_size())
    return _dist
