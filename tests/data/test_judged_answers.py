"""JudgedAnswers: a test run's prompts labelled by the judge's refusal verdicts, e.g. for DRO's refusal probe."""

from __future__ import annotations

import json

import pytest

from reminder_lightning.commands.probe import fit_probe
from reminder_lightning.data.judged_answers import JudgedAnswers
from reminder_lightning.vlm.adapter import VLMSpec


def _run(folder, refusals: list[bool | None]):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"key": f"b/{i}", "benchmark": "b", "id": str(i), "prompt": f"question number {i}?", "image": None}
        for i in range(len(refusals))
    ]
    verdicts = [{"key": f"b/{i}", "unsafe": r is False, "refusal": r} for i, r in enumerate(refusals)]
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "judgements.keyword.jsonl").write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    return folder


def test_prompts_are_split_by_the_refusal_verdict(tmp_path):
    run = _run(tmp_path / "run", [True, False, False, True, False])
    refused, answered = JudgedAnswers(str(run), refused=True).load(), JudgedAnswers(str(run), refused=False).load()
    assert [r.question for r in refused] == ["question number 0?", "question number 3?"]
    assert all(r.is_safe for r in refused) and not any(r.is_safe for r in answered) and len(answered) == 3
    assert JudgedAnswers(str(run), refused=True, benchmarks=["other"]).name == "run:refused"
    with pytest.raises(ValueError, match="no refused prompt"):
        JudgedAnswers(str(run), refused=True, benchmarks=["other"]).load()


def test_an_undecided_or_missing_verdict_stops_the_load(tmp_path):
    run = _run(tmp_path / "run", [True, None, False])
    with pytest.raises(ValueError, match="no refusal verdict for 'b/1'"):
        JudgedAnswers(str(run), refused=True).load()
    with pytest.raises(FileNotFoundError, match="judgements.learned_refusal.jsonl"):
        JudgedAnswers(str(run), refused=True, judge="learned_refusal").load()


def test_a_refusal_probe_is_fitted_from_judged_answers(tmp_path):
    run = _run(tmp_path / "run", [True, False] * 6)
    out = tmp_path / "refusal.safetensors"
    report = fit_probe(
        VLMSpec(name_or_path="tiny:llava", dtype="float32"), JudgedAnswers(str(run), refused=False),
        JudgedAnswers(str(run), refused=True), output=str(out), max_per_class=None, device="cpu",
    )  # fmt: skip
    assert out.is_file() and report["train"]["benign"] + report["test"]["benign"] == 6


def test_an_image_stored_as_bytes_stops_the_load_unless_text_only(tmp_path):
    run = _run(tmp_path / "run", [True, False])
    rows = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    rows[0]["image"] = "<bytes>"
    (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"generations.jsonl:1 \('b/0'\).*with_images: false"):
        JudgedAnswers(str(run), refused=True).load()
    (record,) = JudgedAnswers(str(run), refused=True, with_images=False).load()
    assert record.image is None and record.question == "question number 0?"
