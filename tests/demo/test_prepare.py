"""The demo's prompt split: prompts kept for the gate alone do not move the other splits, and share no prompt."""

from __future__ import annotations

from reminder_lightning.demo.prepare import prompts
from reminder_lightning.demo.prompts import BENIGN_KINDS
from reminder_lightning.evaluation.store import read_jsonl

SIZES = dict(
    n_train_harmful=4, n_val_harmful=3, n_test_harmful=3, n_train_benign=5, n_val_benign=5, n_test_benign=5
)


def _ids(work, split, side):
    return [r["id"] for r in read_jsonl(work / "data" / f"{split}_{side}.jsonl")]


def test_gate_prompts_leave_the_other_splits_as_they_were(tmp_path):
    without, with_gate = tmp_path / "without", tmp_path / "with"
    prompts(work_dir=str(without), seed=3, n_gate_harmful=0, n_gate_benign=0, **SIZES)
    info = prompts(work_dir=str(with_gate), seed=3, n_gate_harmful=4, n_gate_benign=6, **SIZES)
    assert info["counts"]["gate_harmful"] == 4 and info["counts"]["gate_benign"] == 6
    for split in ("train", "val", "test"):
        for side in ("harmful", "benign"):
            assert _ids(with_gate, split, side) == _ids(without, split, side)  # the same prompts, same order
    assert _ids(without, "gate", "harmful") == [] and _ids(without, "gate", "benign") == []
    everything = [i for s in ("train", "val", "test", "gate") for side in ("harmful", "benign")
                  for i in _ids(with_gate, s, side)]  # fmt: skip
    assert len(everything) == len(set(everything))  # no prompt in two splits
    kinds = {r["category"] for r in read_jsonl(with_gate / "data" / "gate_benign.jsonl")}
    assert kinds == set(BENIGN_KINDS)  # stratified like the others: every kind among six prompts
