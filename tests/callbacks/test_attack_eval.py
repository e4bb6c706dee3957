import json

import pytest
import torch

from reminder_lightning.attacks.gcg import SUFFIX_FILE
from reminder_lightning.attacks.typographic import FigStepAttack
from reminder_lightning.callbacks.attack_eval import AttackEvaluation
from reminder_lightning.commands.attack import run_attack
from reminder_lightning.evaluation.benchmarks.generic import GenericBenchmark
from reminder_lightning.evaluation.store import read_jsonl
from tests.training.helpers import REPO, run_fit, step_losses

HARMFUL = str(REPO / "data/tiny/eval/harmful.jsonl")


def _callback(**init_args) -> str:
    return "--trainer.callbacks+=" + json.dumps(
        {"class_path": "reminder_lightning.callbacks.attack_eval.AttackEvaluation", "init_args": init_args}
    )


def test_attack_asr_is_logged_during_fit_from_a_set_built_once(tmp_path):
    figstep = run_attack(
        FigStepAttack(image_size=64, font_size=8),
        GenericBenchmark(HARMFUL, name="tiny_harmful"),
        str(tmp_path / "fs"),
    )
    gcg = {
        "class_path": "reminder_lightning.attacks.gcg.GCGAttack",
        "init_args": {"num_steps": 2, "search_width": 8, "topk": 8, "suffix_length": 4, "early_stop": False},
    }
    common = {"max_samples": 2, "max_new_tokens": 8, "batch_size": 2}
    cli = run_fit(
        tmp_path,
        "--trainer.max_epochs=2",
        "--data.init_args.num_examples=4",
        "--model.schedule.interval=4",
        _callback(
            attack=gcg,
            benchmark={
                "class_path": "reminder_lightning.evaluation.benchmarks.generic.GenericBenchmark",
                "init_args": {"path": HARMFUL, "name": "tiny_harmful"},
            },
            at_fit_start=True,
            **common,
        ),
        _callback(attacked_path=str(figstep), name="figstep", **common),
    )
    gcg_cb, fs_cb = (c for c in cli.trainer.callbacks if isinstance(c, AttackEvaluation))
    asr, gate = step_losses(cli, "attack/gcg/asr"), step_losses(cli, "attack/gcg/gate_rate")
    assert sorted(asr) == [0, 1, 2]  # fit start, then after each of the two epochs (1 step of 4 examples)
    assert all(v in (0.0, 0.5, 1.0) for v in asr.values())  # 2 prompts, keyword judge
    assert all(v == 1.0 for v in gate.values())  # no probe: mode always, every answer keeps the reminder
    assert sorted(step_losses(cli, "attack/figstep/asr")) == [1, 2]  # no at_fit_start
    # the attacked set was built once: GCG optimised each of the 2 prompts once (2 steps each) for 3 evaluations
    assert gcg_cb.builds == 1 and gcg_cb.attack.steps_run == 4
    suffixes = read_jsonl(tmp_path / "attacks" / "gcg" / SUFFIX_FILE)
    assert len(suffixes) == 2 and [s.prompt for s in gcg_cb.samples] == [
        f"{r['question']} {r['suffix']}" for r in suffixes
    ]
    assert gcg_cb.attack.adapter is cli.model.vlm  # the module's VLM, no second copy
    assert (
        fs_cb.builds == 1
        and len(fs_cb.samples) == 2
        and fs_cb.samples[0].judge_question != fs_cb.samples[0].prompt
    )
    ckpt = torch.load(cli.trainer.checkpoint_callback.last_model_path, map_location="cpu", weights_only=False)
    state = ckpt["callbacks"]["AttackEvaluation{'name': 'gcg'}"]
    assert [h["epoch"] for h in state["history"]] == [-1, 0, 1]
    assert state["history"][1]["attack/gcg/asr"] == asr[1]


def test_attack_evaluation_needs_one_source():
    with pytest.raises(ValueError, match="either `attack` and `benchmark`, or `attacked_path`"):
        AttackEvaluation()
    with pytest.raises(ValueError, match="not both"):
        AttackEvaluation(FigStepAttack(), GenericBenchmark(HARMFUL), attacked_path="x.jsonl")
