"""RecordsBenchmark: a training record source answered by `test` (DRO's refusal labels come from such a run)."""

from __future__ import annotations

import json

import pytest

from reminder_lightning.data.sources import LocalRecords
from reminder_lightning.evaluation.benchmarks.records import RecordsBenchmark


def _records(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_records_become_samples_harmful_as_the_record_says(tmp_path):
    harmful = _records(
        tmp_path / "h.jsonl",
        [
            {
                "id": f"h{i}",
                "question": f"bad {i}",
                "safe_answer": "No.",
                "harmful_answer": "Sure.",
                "category": "c",
            }
            for i in range(3)
        ],
    )
    benign = _records(tmp_path / "b.jsonl", [{"id": "b0", "question": "good?", "safe_answer": "Yes."}])
    h = RecordsBenchmark(LocalRecords(str(harmful), kind="harmful"), name="train_harmful", limit=2).load()
    b = RecordsBenchmark(LocalRecords(str(benign), kind="benign"), name="train_benign").load()
    assert [(s.id, s.prompt, s.harmful, s.benchmark) for s in h] == [
        ("h0", "bad 0", True, "train_harmful"), ("h1", "bad 1", True, "train_harmful"),
    ]  # fmt: skip
    assert [(s.id, s.harmful) for s in b] == [("b0", False)] and h[0].meta["source"].endswith("h.jsonl row 0")


def test_a_missing_source_file_names_itself(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        RecordsBenchmark(LocalRecords(str(tmp_path / "missing.jsonl"), kind="harmful")).load()
