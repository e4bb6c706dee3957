"""Adversarial calibration (``harden``) and the probe command's adversarial images, on the tiny LLaVA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reminder_lightning.cli import main
from reminder_lightning.reminder.artifact import load_reminder
from tests.conftest import random_reminder
from tests.evaluation.test_robustness import PGD_ARGS
from tests.training.helpers import REPO


def test_each_round_attacks_the_previous_gate_and_refits_with_every_image_so_far(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    artifact = str(random_reminder(tmp_path / "reminder.safetensors"))
    probe = yaml.safe_load((REPO / "configs/probe_tiny.yaml").read_text())
    probe.update(position="reminder", answers=True, reminder=artifact, max_new_tokens=24, with_images=True,
                 layers=[1, -1], components=[2, 3], target_fpr=0.25, max_per_class=12)  # fmt: skip
    probe_config = tmp_path / "probe.yaml"
    probe_config.write_text(yaml.safe_dump(probe))
    config = {"probe_config": str(probe_config), "attack": "reminder_lightning.attacks.adaptive_pgd.AdaptivePGDAttack",
              "attack_args": {**PGD_ARGS, "iterations": 2}, "goals": "data/tiny/harmful.jsonl", "rounds": 2,
              "output_dir": str(tmp_path / "harden")}  # fmt: skip
    (tmp_path / "harden.yaml").write_text(json.dumps(config))
    result = main(["harden", "--config", str(tmp_path / "harden.yaml")])
    first, second = result["rounds"]
    assert first["attacked_gate"] == artifact and second["attacked_gate"] == first["reminder"]
    assert first["image"] != second["image"]
    for r in (first, second):
        assert 0.0 <= r["val_tpr_attacked"] <= 1.0 and r["val_fpr"] <= 0.25 and r["attack"]["p_safe"] is not None
        gate = json.loads(load_reminder(r["reminder"]).metadata["gate"])
        assert len(gate["adversarial"]["images"]) == r["round"]  # every image so far counts as harmful
        clean = gate["validation"]["harmful_answers"] // (1 + r["round"])
        assert gate["validation"]["harmful_answers"] == clean * (1 + r["round"])
    assert (tmp_path / "harden" / "reminder.safetensors").read_bytes() == Path(second["reminder"]).read_bytes()
    rows = (tmp_path / "harden" / "harden.md").read_text().splitlines()
    assert [row.split(" |")[0] for row in rows[2:]] == ["| 1", "| 2"]


def test_adversarial_images_need_the_gate_inside_answers(tmp_path):
    with pytest.raises(ValueError, match="adversarial_images calibrates the gate inside answers"):
        main(["probe", "--config", str(REPO / "configs/probe_tiny.yaml"), "--adversarial_images=[x.png]"])
