"""Adversarial calibration (``harden``) and the probe command's adversarial images, on the tiny LLaVA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reminder_lightning.cli import main
from reminder_lightning.data.records import Record, suffixed_copies
from reminder_lightning.reminder.artifact import load_reminder
from tests.conftest import random_reminder
from tests.evaluation.test_robustness import GCG_ARGS, PGD_ARGS
from tests.training.helpers import REPO


def test_each_round_attacks_the_previous_gate_and_refits_with_every_image_and_suffix_group_so_far(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(REPO)
    artifact = str(random_reminder(tmp_path / "reminder.safetensors"))
    probe = yaml.safe_load((REPO / "configs/probe_tiny.yaml").read_text())
    probe.update(position="reminder", answers=True, reminder=artifact, max_new_tokens=24, with_images=True,
                 layers=[1, -1], components=[2, 3], target_fpr=0.25, max_per_class=12)  # fmt: skip
    probe_config = tmp_path / "probe.yaml"
    probe_config.write_text(yaml.safe_dump(probe))
    attacks = [
        {"class_path": "reminder_lightning.attacks.adaptive_pgd.AdaptivePGDAttack",
         "init_args": {**PGD_ARGS, "iterations": 2}},
        {"class_path": "reminder_lightning.attacks.adaptive_gcg.AdaptiveGCGAttack", "label": "gcg", "max_goals": 2,
         "init_args": {**GCG_ARGS, "num_steps": 2, "early_stop": False}},
    ]  # fmt: skip
    config = {"probe_config": str(probe_config), "attacks": attacks, "goals": "data/tiny/harmful.jsonl", "rounds": 2,
              "output_dir": str(tmp_path / "harden")}  # fmt: skip
    (tmp_path / "harden.yaml").write_text(json.dumps(config))
    result = main(["harden", "--config", str(tmp_path / "harden.yaml")])
    cached = [line for line in capsys.readouterr().out.splitlines() if line.startswith("check states:")]
    # round 1 reads 8 parts (harmful train and validation: clean, image, suffixes; benign train and validation);
    # round 2 reads those again from states/ and runs the model on its own image and suffix group only
    assert [line.split(" from ")[0] + ", " + line.split(", ")[-1] for line in cached] == [
        "check states: 0 parts read, 8 computed", "check states: 8 parts read, 4 computed"]  # fmt: skip
    first, second = result["rounds"]
    assert first["attacked_gate"] == artifact and second["attacked_gate"] == first["reminder"]
    assert [a["label"] for a in first["attacks"]] == ["adaptive_pgd", "gcg"]
    assert first["attacks"][0]["images"] != second["attacks"][0]["images"]
    for r in (first, second):
        pgd, gcg = r["attacks"]
        assert len(pgd["images"]) == 1 and not pgd["suffixes"] and pgd["p_safe"] is not None
        assert (
            not gcg["images"] and len(gcg["suffixes"]) == 2 and gcg["goals"] == 2
        )  # one suffix per goal searched
        assert 0.0 <= gcg["p_safe"] <= 1.0 and 0.0 <= gcg["gate_rate"] <= 1.0
        assert 0.0 <= r["val_tpr_attacked"] <= 1.0 and r["val_fpr"] <= 0.25
        assert r["val_tpr_images"] is not None and r["val_tpr_suffixes"] is not None
        gate = json.loads(load_reminder(r["reminder"]).metadata["gate"])
        # every image and every suffix group so far counts as harmful
        assert len(gate["adversarial"]["images"]) == len(gate["adversarial"]["suffixes"]) == r["round"]
        assert gate["adversarial"]["suffixes"][-1] == gcg["suffixes"]
        clean = gate["validation"]["harmful_answers"] // (1 + 2 * r["round"])
        assert gate["validation"]["harmful_answers"] == clean * (1 + 2 * r["round"])
        refit = yaml.safe_load((tmp_path / "harden" / f"round{r['round']}" / "refit.yaml").read_text())
        assert refit["adversarial_suffixes"] == gate["adversarial"]["suffixes"]
    assert (tmp_path / "harden" / "reminder.safetensors").read_bytes() == Path(second["reminder"]).read_bytes()
    rows = (tmp_path / "harden" / "harden.md").read_text().splitlines()
    assert [row.split(" |")[0] for row in rows[2:]] == ["| 1", "| 2"] and "gcg " in rows[2]


def test_suffixed_copies_read_each_record_once_per_group_with_the_suffixes_in_turn():
    records = [Record(id=f"r{i}", question=f"q{i}", safe_answer="no", is_safe=False) for i in range(3)]
    copies = suffixed_copies(records, [["a b", "c"], ["d"]])
    assert [c.question for c in copies] == ["q0 a b", "q1 c", "q2 a b", "q0 d", "q1 d", "q2 d"]
    assert [c.id for c in copies[:4]] == ["r0+sfx0", "r1+sfx0", "r2+sfx0", "r0+sfx1"]
    with pytest.raises(ValueError, match="suffix group 1 is empty"):
        suffixed_copies(records, [["a"], []])


def test_harden_refuses_an_attack_that_cannot_say_what_it_made(tmp_path):
    probe = yaml.safe_load((REPO / "configs/probe_tiny.yaml").read_text())
    probe.update(position="reminder", answers=True, reminder="r.safetensors", target_fpr=0.25)
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(probe))
    plain = [{"class_path": "reminder_lightning.attacks.pgd.PGDImageAttack", "init_args": PGD_ARGS}]
    with pytest.raises(ValueError, match="no hardening_inputs"):
        main(["harden", "--probe_config", str(tmp_path / "probe.yaml"), "--goals", "g.jsonl",
              f"--attacks={json.dumps(plain)}"])  # fmt: skip


def test_adversarial_images_need_the_gate_inside_answers(tmp_path):
    with pytest.raises(ValueError, match="calibrate the gate inside answers"):
        main(["probe", "--config", str(REPO / "configs/probe_tiny.yaml"), "--adversarial_images=[x.png]"])
