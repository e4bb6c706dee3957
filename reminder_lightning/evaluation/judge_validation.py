"""Score a judge against human labels: precision, recall, F1 and accuracy with Wilson intervals, and every
disagreement.

Every ASR and over-refusal figure rests on a judge, so a judge is validated against labels it was not written
from before its numbers are reported. A labelled file has one row per (question, answer, label):

* ``label: refusal | compliance`` scores the judge's ``refusal`` verdict;
* ``label: unsafe | safe`` scores its ``unsafe`` verdict.

Rows with any other label (the shipped set keeps ``off_topic`` and ``implicit_refusal`` answers, which the
source's annotators counted as refusals) are not scored; the report says how the judge called them.

``python -m reminder_lightning judge --validate pyrit-refusal --output_dir runs/judges`` runs it on the shipped
set (:mod:`~reminder_lightning.evaluation.judge_sets`); any ``.jsonl`` / ``.json`` / ``.csv`` path works too.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reminder_lightning.data.readers import read_rows, required_text
from reminder_lightning.data.records import RecordError
from reminder_lightning.evaluation.judges.base import Judge
from reminder_lightning.evaluation.metrics import cohen_kappa, wilson_interval

#: Label pairs a judge can be scored on: (positive, negative) -> the Verdict field it is compared with.
TARGETS: dict[tuple[str, str], str] = {("refusal", "compliance"): "refusal", ("unsafe", "safe"): "unsafe"}


@dataclass(frozen=True)
class LabelledAnswer:
    """One labelled row. ``meta`` keeps the file's other columns (source, annotator, note) for the report."""

    id: str
    question: str
    answer: str
    label: str
    meta: dict[str, Any] = field(default_factory=dict)


def load_labelled(path: str | Path) -> list[LabelledAnswer]:
    """Read a labelled file (``question``, ``answer``, ``label``; optional ``id``); every row is checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No labelled file at {path}. Fix: give a .jsonl/.json/.csv with question, answer and label columns, "
            "or `pyrit-refusal` for the shipped set."
        )
    rows, seen = [], set()
    for i, row in enumerate(read_rows(path)):
        where = f"{path} row {i}"
        label = required_text(row, "label", "label", where).strip().lower()
        item = LabelledAnswer(
            id=str(row.get("id", i)),
            question=required_text(row, "question", "question", where),
            answer=required_text(row, "answer", "answer", where),
            label=label,
            meta={k: v for k, v in row.items() if k not in {"id", "question", "answer", "label"}},
        )
        if item.id in seen:
            raise RecordError(f"{where}: id '{item.id}' appears twice. Fix: give every row its own id.")
        seen.add(item.id)
        rows.append(item)
    return rows


def scored_target(rows: list[LabelledAnswer], where: str) -> tuple[str, str, str]:
    """The (positive, negative, verdict field) the rows' labels name; fails when they name none or two."""
    labels = {r.label for r in rows}
    found = [(pos, neg, f) for (pos, neg), f in TARGETS.items() if labels & {pos, neg}]
    if len(found) != 1:
        raise RecordError(
            f"{where}: labels {sorted(labels)} name {'no' if not found else 'more than one'} scoreable pair. Fix: "
            f"label rows with one of {[list(k) for k in TARGETS]} (other labels are reported, not scored)."
        )
    return found[0]


def _rate(hits: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(hits, n)
    return {"value": hits / n if n else float("nan"), "low": low, "high": high, "hits": hits, "n": n}


def validate_judge(judge: Judge, rows: list[LabelledAnswer], batch_size: int = 32, where: str = "") -> dict:
    """Run ``judge`` on every row and score it. Returns a JSON-ready dict: per label precision, recall, F1
    (Wilson 95% intervals on precision and recall), accuracy, Cohen's kappa with the labels, the confusion
    counts, how unscored labels were called, and the disagreements. Rows a learnt judge was fitted on (its
    ``trained_on`` SHA-256 set) are left out and counted, so the figures are held-out ones."""
    trained_on = getattr(judge, "trained_on", frozenset())
    n_given = len(rows)
    rows = [r for r in rows if hashlib.sha256(r.answer.encode("utf-8")).hexdigest() not in trained_on]
    if not rows:
        raise RecordError(
            f"{where or 'labelled rows'}: {judge.name} was fitted on every row; nothing is held out to score it on."
        )
    positive, negative, target = scored_target(rows, where or "labelled rows")
    called: list[bool] = []
    raws: list[str] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        verdicts = judge.judge([r.question for r in batch], [r.answer for r in batch])
        called += [bool(getattr(v, target)) for v in verdicts]
        raws += [v.raw for v in verdicts]
    scored = [(r, c, raw) for r, c, raw in zip(rows, called, raws, strict=True) if r.label in (positive, negative)]
    truth = [r.label == positive for r, _, _ in scored]
    pred = [c for _, c, _ in scored]
    per_label = {}
    for name, want in ((positive, True), (negative, False)):
        hits = sum(t == want and p == want for t, p in zip(truth, pred, strict=True))
        precision, recall = _rate(hits, sum(p == want for p in pred)), _rate(hits, sum(t == want for t in truth))
        p, r = precision["value"], recall["value"]
        per_label[name] = {"precision": precision, "recall": recall, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    unscored = Counter(
        (r.label, c) for r, c in zip(rows, called, strict=True) if r.label not in (positive, negative)
    )
    disagreements = [
        {"id": r.id, "label": r.label, "judge_says": positive if p else negative, "raw": raw, "question": r.question,
         "answer": r.answer, **r.meta}
        for (r, p, raw), t in zip(scored, truth, strict=True)
        if p != t
    ]  # fmt: skip
    return {
        "judge": judge.name,
        "target": target,
        "positive": positive,
        "negative": negative,
        "n": len(scored),
        "left_out_trained_on": n_given - len(rows),
        "accuracy": _rate(sum(t == p for t, p in zip(truth, pred, strict=True)), len(scored)),
        "kappa": cohen_kappa(truth, pred),
        "labels": per_label,
        "unscored": {
            label: {positive: unscored[(label, True)], negative: unscored[(label, False)]}
            for label in sorted({lab for lab, _ in unscored})
        },
        "disagreements": disagreements,
    }


def _pct(rate: dict[str, Any]) -> str:
    return f"{100 * rate['value']:.1f}% [{100 * rate['low']:.1f}, {100 * rate['high']:.1f}]"


def validation_table(results: list[dict]) -> str:
    """One markdown table: a row per judge and label, then the unscored labels and the disagreement counts."""
    lines = [
        "| judge | label | n | precision | recall | F1 |",
        "|---|---|---:|---|---|---:|",
    ]
    for res in results:
        for label, m in res["labels"].items():
            lines.append(
                f"| {res['judge']} | {label} | {m['recall']['n']} | {_pct(m['precision'])} | {_pct(m['recall'])} "
                f"| {m['f1']:.3f} |"
            )
    lines.append("")
    for res in results:
        lines.append(
            f"{res['judge']}: accuracy {_pct(res['accuracy'])} on {res['n']} answers, Cohen's kappa with the labels "
            f"{res['kappa']:.3f}, {len(res['disagreements'])} disagreements."
            + (
                f" {res['left_out_trained_on']} rows it was fitted on left out."
                if res.get("left_out_trained_on")
                else ""
            )
        )
        for label, calls in res["unscored"].items():
            lines.append(f"  unscored '{label}': called {res['positive']} {calls[res['positive']]}, "
                         f"{res['negative']} {calls[res['negative']]}")  # fmt: skip
    return "\n".join(lines)


def write_validation(output_dir: str | Path, results: list[dict], source: str) -> Path:
    """``judge_validation.json`` (everything), ``judge_validation.md`` (the table) and
    ``disagreements.<judge>.jsonl`` in ``output_dir``. Returns the markdown path."""
    from reminder_lightning.evaluation.store import write_jsonl

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "judge_validation.json").write_text(json.dumps({"source": source, "results": results}, indent=2))
    for res in results:
        write_jsonl(out / f"disagreements.{res['judge']}.jsonl", res["disagreements"])
    md = out / "judge_validation.md"
    md.write_text(f"# Judge validation\n\nLabelled set: {source}\n\n{validation_table(results)}\n")
    return md
