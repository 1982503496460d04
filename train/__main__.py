"""python -m train: train a model on MNIST; see --help."""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (paddle.distributed.launch train/__main__.py):
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # import the package from the repo root, not train/

from train import distributed
from train.config import build_parser, config_from_args
from train.mnist import DataError
from train.rundir import CONFIG_FILE, RunDir
from train.runner import new_run_dir, train


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.resume:
            run = RunDir(args.resume)
            if not run.is_run():
                print(f"error: {run} is not a run folder (no {CONFIG_FILE})", file=sys.stderr)
                return 2
            result = train(run.read_config(), run.path, resume=True)
        else:
            cfg = config_from_args(args)
            dist = distributed.setup(cfg.device)  # under the launcher, rank 0 names the one run folder
            run_dir = Path(dist.share(str(new_run_dir(args.runs_dir, args.run_name, cfg.model)) if dist.is_main else None))
            if dist.is_main:
                print(f"run folder: {run_dir}")
            result = train(cfg, run_dir, dry_run=args.dry_run)
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2
    return 130 if result.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
