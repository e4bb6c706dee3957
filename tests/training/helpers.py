"""Running the real CLI in-process on the tiny config, with outputs under a temporary directory."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from reminder_lightning.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "tiny.yaml")


def run_fit(tmp_path: Path, *extra: str, config: str = TINY):
    args = [
        "fit",
        "--config",
        config,
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--model.export_path=null",  # the run directory, not the tiny config's fixed path in the repo
        *extra,
    ]
    return main(args)


def step_losses(cli, key: str = "train/loss") -> dict[int, float]:
    """``{global step: value}`` from the CSV logger's metrics file."""
    out = {}
    with open(Path(cli.trainer.logger.log_dir) / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get(key):
                out[int(row["step"])] = float(row[key])
    return out


def epoch_means(cli, key: str = "train/loss") -> list[float]:
    sums, counts = defaultdict(float), defaultdict(int)
    with open(Path(cli.trainer.logger.log_dir) / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get(key):
                sums[int(row["epoch"])] += float(row[key])
                counts[int(row["epoch"])] += 1
    return [sums[e] / counts[e] for e in sorted(sums)]
