"""The run folder: the one owner of its file names, of metrics.jsonl and of the run's position record.

    runs/<name>/
      config.json     the resolved TrainConfig (what really ran)
      metrics.jsonl   one JSON record a line: kind "step" (every --log-every steps), "val" (a validation
                      inside an epoch) and "epoch" (epoch end, with its validation); every validation
                      record carries wall_s, the wall time since the trainer started
      checkpoints/    resumable checkpoints (train.checkpoint owns their layout)
      best/           the best-on-validation weights
      result.json     written once, at the end: the test accuracy of best/
      report.md ...   pictures and report (train.report)

Everything that reads or writes these files goes through here, so a name or a record's shape
changes in one place.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

from train import checkpoint as ckpt

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"

STEP, VAL, EPOCH = "step", "val", "epoch"  # the kinds of metrics.jsonl records


@dataclass
class Best:
    """The best validation so far (epoch ends only): what best/ holds."""

    val_acc: float = -1.0
    val_loss: float | None = None
    epoch: int = -1


@dataclass
class Position:
    """Where a run stands: saved in every checkpoint's state.json, so resume continues exactly here."""

    epoch: int = 0  # the epoch being trained (== epochs when done)
    step: int = 0  # the next step inside that epoch
    global_step: int = 0  # steps taken since the start of the run
    best: Best = field(default_factory=Best)
    stale_epochs: int = 0  # epochs since best improved (early stopping)
    wall_s: float = 0.0  # training wall time up to this position

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Position":
        best = d.get("best") or {}
        return cls(epoch=d["epoch"], step=d["step"], global_step=d["global_step"],
                   best=Best(**{k: best[k] for k in ("val_acc", "val_loss", "epoch") if k in best}),
                   stale_epochs=d.get("stale_epochs", 0), wall_s=d.get("wall_s", 0.0))


@dataclass
class Metrics:
    """metrics.jsonl, split by kind, each in file order."""

    steps: list[dict]
    vals: list[dict]
    epochs: list[dict]

    def validations(self) -> list[dict]:
        """Every validation (inside and at the end of epochs), in training order."""
        return sorted([*self.vals, *self.epochs], key=lambda r: r["wall_s"])


class RunDir:
    """One run folder; paths and readers/writers of its files."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    @classmethod
    def create(cls, runs_dir, name: str | None, model: str) -> "RunDir":
        """A new, empty run folder: runs_dir/name, by default <model>-<timestamp>."""
        name = name or f"{model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        path = Path(runs_dir) / name
        path.mkdir(parents=True, exist_ok=False)
        return cls(path)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def result_path(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def report_json_path(self) -> Path:
        return self.path / REPORT_JSON

    @property
    def best_dir(self) -> Path:
        return self.path / ckpt.BEST_DIR

    def is_run(self) -> bool:
        """A folder that training has started in (it has its config)."""
        return self.config_path.is_file()

    def has_best(self) -> bool:
        return (self.best_dir / ckpt.STATE_FILE).is_file()

    # -- config.json ---------------------------------------------------------------------------
    def write_config(self, cfg) -> None:
        self.config_path.write_text(json.dumps(cfg.to_dict(), indent=2))

    def read_config_dict(self) -> dict:
        return json.loads(self.config_path.read_text())

    def read_config(self):
        """The run's TrainConfig, as saved (not resolved)."""
        from train.config import TrainConfig

        return TrainConfig.from_dict(self.read_config_dict())

    # -- metrics.jsonl -------------------------------------------------------------------------
    def append_metric(self, kind: str, record: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({"kind": kind, **record}) + "\n")

    def read_records(self) -> list[dict]:
        p = self.metrics_path
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []

    def read_metrics(self) -> Metrics:
        records = self.read_records()
        return Metrics(*([r for r in records if r["kind"] == k] for k in (STEP, VAL, EPOCH)))

    def truncate_metrics(self, position: Position) -> None:
        """On resume, drop records written after the checkpoint's position: training writes them again."""
        if not self.metrics_path.exists():
            return
        kept = [r for r in self.read_records() if _before(r, position)]
        self._write_records(kept)

    def clear_metrics(self) -> None:
        self.metrics_path.unlink(missing_ok=True)

    def _write_records(self, records: Iterable[dict]) -> None:
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in records))

    # -- result.json ---------------------------------------------------------------------------
    def write_result(self, result: dict) -> None:
        self.result_path.write_text(json.dumps(result, indent=2))

    def read_result(self) -> dict | None:
        return json.loads(self.result_path.read_text()) if self.result_path.exists() else None

    def read_report_summary(self) -> dict | None:
        p = self.report_json_path
        return json.loads(p.read_text()) if p.exists() else None


def _before(record: dict, position: Position) -> bool:
    if record["kind"] == EPOCH:
        return record["epoch"] < position.epoch
    # step and val records: the step they were taken after
    return record["global_step"] < position.global_step


def newest_with_best(runs_dir) -> RunDir | None:
    """The run under runs_dir whose best checkpoint was written last (None: no such run)."""
    root = Path(runs_dir)
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    runs = [r for r in runs if r.has_best()]
    return max(runs, key=lambda r: (r.best_dir / ckpt.STATE_FILE).stat().st_mtime) if runs else None


def runs_under(runs_dir) -> list[RunDir]:
    """Every run folder directly under runs_dir."""
    root = Path(runs_dir)
    return sorted((RunDir(p) for p in root.iterdir() if (p / CONFIG_FILE).is_file()), key=lambda r: r.path) \
        if root.is_dir() else []


def time_to_accuracy(run: RunDir, target: float) -> dict | None:
    """The first validation reaching target: its record (wall_s, epoch, global_step...), or None."""
    return next((r for r in run.read_metrics().validations() if r["val_acc"] >= target), None)
