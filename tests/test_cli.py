"""CLI contracts: the schedule has one home, and every command documents its options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reminder_lightning.cli import main
from tests.training.helpers import REPO, TINY


def test_model_schedule_is_linked_into_the_data_module(monkeypatch):
    monkeypatch.chdir(REPO)
    cli = main(["--config", TINY, "--model.schedule.interval=8", "--trainer.logger=false"], run=False)
    assert cli.model.schedule.interval == 8 and cli.datamodule.schedule == cli.model.schedule


@pytest.mark.parametrize("where", ["file", "argument"])
def test_a_second_interval_on_the_data_module_fails_clearly(tmp_path, monkeypatch, where):
    monkeypatch.chdir(REPO)
    if where == "file":
        bad = tmp_path / "mismatch.yaml"
        bad.write_text("data:\n  init_args:\n    schedule:\n      interval: 4\n")
        extra = ["--config", str(bad)]
    else:
        extra = ["--data.init_args.schedule.interval=4"]
    with pytest.raises(ValueError, match="schedule has one home: `model.schedule`") as err:
        main(["fit", "--config", TINY, "--model.schedule.interval=16", *extra], run=True)
    assert ("mismatch.yaml" in str(err.value)) == (where == "file")


def test_probe_help_documents_the_reminder_position_calibration():
    out = subprocess.run(
        [sys.executable, "-m", "reminder_lightning", "probe", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in (
        "--position",
        "--answers",
        "--layers",
        "--components",
        "--target_fpr",
        "--threshold_rule",
        "--validation_harmful",
        "--validation_benign",
        "--max_new_tokens",
    ):
        assert option in out, option
    assert "mid_gap" in out and "at_fpr" in out


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reminder_lightning", *argv], capture_output=True, text=True, cwd=REPO
    )


def test_top_level_help_lists_every_command_and_predict_is_refused_with_the_alternative():
    out = _cli("--help")
    assert out.returncode == 0
    for command in ("fit", "validate", "test", "compare", "probe", "judge", "attack", "robustness", "harden"):
        assert f"\n  {command} " in out.stdout, command
    assert "predict" not in out.stdout
    bare = _cli()
    assert bare.returncode == 2 and "commands:" in bare.stdout
    refused = _cli("predict", "--config", TINY)
    assert refused.returncode != 0 and "GenericBenchmark" in refused.stderr


@pytest.mark.parametrize(
    "command, config, key",
    [
        ("probe", "configs/probe_tiny.yaml", "position:"),
        ("attack", "configs/attacks/gcg_tiny.yaml", "attack:"),
        ("compare", "configs/compare/tiny_defences.yaml", "defences:"),
        ("robustness", "configs/robustness/demo.yaml", "attacks:"),
        ("harden", "configs/harden/demo.yaml", "rounds:"),
        ("harden", "configs/harden/demo_text.yaml", "max_goals:"),
        ("select-spa-vl", "configs/select_spa_vl.yaml", "output:"),
    ],
)
def test_every_extra_command_takes_dash_c_and_print_config(command, config, key):
    out = _cli(command, "-c", config, "--print_config")
    assert out.returncode == 0, out.stderr
    assert key in out.stdout


def test_validate_without_validation_records_stops_with_the_fix(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError, match="val_fraction 0.1"):
        main(["validate", "--config", TINY, "--trainer.logger=false"])
