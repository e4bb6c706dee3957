"""What the offline demo needs that no user command does: its prompt split and images, and SAPT records made from
the demo model's own answers. Everything else in ``make demo`` is a user command (``test``, ``probe``, ``fit``,
``compare``); see ``scripts/demo.sh`` for the chain.

* ``prompts``: AdvBench behaviours and benign requests of five kinds (questions on sensitive-sounding and everyday
  topics, step-by-step problems, writing tasks, code) split with ``seed`` into train / validation / held-out test /
  gate (prompts whose answers only fit the gate; benign kinds stratified), each with a FigStep-style typographic
  image of its text; written as :class:`~reminder_lightning.evaluation.benchmarks.generic.GenericBenchmark` files
  ``data/<split>_<side>.jsonl``.
* ``records``: after ``test`` has answered the train, validation and gate prompts undefended (``eval/answers``), the
  model's compliant answers to harmful prompts become SAPT's harmful answers (with a refusal as the safe answer) and
  its own benign answers the benign targets: ``data/sapt_<split>_<side>.jsonl`` in
  :class:`~reminder_lightning.data.sources.LocalRecords` layout. Harmful answers the keyword judge calls refusals
  are left out (there is nothing harmful to cut a prefix from), and so are answers under ``min_chars``. The gate
  split's records (``sapt_gate_*``) only fit the gate (``ProbeCalibration``'s ``train_harmful`` / ``train_benign``,
  beside the training records); SAPT does not train on them. The same
  train harmful records, with the opening of the model's compliant answer as target, are the attacker's goals for
  ``robustness`` (``data/attack_goals.jsonl``).

    python -m reminder_lightning.demo prompts --work_dir runs/demo --seed 1
    python -m reminder_lightning.demo records --work_dir runs/demo
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Literal

from reminder_lightning.data.refusals import REFUSAL_POOLS, refusal_for
from reminder_lightning.demo.prompts import (
    BENIGN_KINDS,
    Prompt,
    advbench_prompts,
    benign_prompts,
    render_typographic,
)
from reminder_lightning.evaluation.store import read_jsonl, write_jsonl

SPLITS = ("train", "val", "test", "gate")  # gate: prompts whose answers only fit the gate


def prompts(
    work_dir: str = "runs/demo",
    seed: int = 1,
    n_train_harmful: int = 80,
    n_val_harmful: int = 48,
    n_test_harmful: int = 64,
    n_train_benign: int = 80,
    n_val_benign: int = 100,
    n_test_benign: int = 64,
    n_gate_harmful: int = 80,
    n_gate_benign: int = 80,
) -> dict:
    """Split the prompts and render their images.

    Args:
        work_dir: The demo's folder; files go to ``<work_dir>/data``.
        seed: Seed of the split (a new seed is a new, never-seen held-out split).
        n_train_harmful: Harmful prompts whose answers train the reminder and fit the gate.
        n_val_harmful: Harmful prompts the gate is chosen on.
        n_test_harmful: Held-out harmful prompts (reported only).
        n_train_benign: Benign prompts for training (split evenly over the five kinds).
        n_val_benign: Benign prompts the gate's false-positive rate is set on (split evenly over the kinds).
        n_test_benign: Held-out benign prompts (split evenly over the kinds).
        n_gate_harmful: More harmful prompts whose answers only fit the gate (SAPT does not train on them).
        n_gate_benign: More benign prompts whose answers only fit the gate (split evenly over the kinds).
    """
    data = Path(work_dir) / "data"
    rng = random.Random(f"demo-split:{seed}")
    harmful = advbench_prompts()
    rng.shuffle(harmful)
    sizes = {"harmful": (n_train_harmful, n_val_harmful, n_test_harmful, n_gate_harmful)}
    if sum(sizes["harmful"]) > len(harmful):
        raise ValueError(f"The demo asks for {sum(sizes['harmful'])} harmful prompts; pyrit has {len(harmful)}.")
    splits = {
        "harmful": _cut(harmful, sizes["harmful"])
    }  # held-out first: it does not move when train/val sizes do
    by_kind = {kind: [p for p in benign_prompts() if p.category == kind] for kind in BENIGN_KINDS}
    benign_splits: dict[str, list[Prompt]] = {s: [] for s in SPLITS}
    for k, kind in enumerate(BENIGN_KINDS):  # stratified: every split holds every kind
        pool = by_kind[kind]
        rng.shuffle(pool)
        share = [
            n // len(BENIGN_KINDS) + (1 if k < n % len(BENIGN_KINDS) else 0)
            for n in (n_train_benign, n_val_benign, n_test_benign, n_gate_benign)
        ]
        if sum(share) > len(pool):
            raise ValueError(
                f"The demo asks for {sum(share)} benign '{kind}' prompts; the packages have {len(pool)}."
            )
        for split, part in zip(SPLITS, _cut(pool, share), strict=True):
            benign_splits[split] += part
    splits["benign"] = [benign_splits[s] for s in SPLITS]
    counts = {}
    for side, parts in splits.items():
        for split, part in zip(SPLITS, parts, strict=True):
            rows = [
                {"id": p.id, "question": p.question, "image": _image(data, p), "category": p.category}
                for p in part
            ]
            write_jsonl(data / f"{split}_{side}.jsonl", rows)
            counts[f"{split}_{side}"] = len(rows)
    info = {"seed": seed, "counts": counts}
    (data / "split.json").write_text(json.dumps(info, indent=2))
    print(f"Demo prompts (split seed {seed}) in {data}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return info


def records(
    work_dir: str = "runs/demo",
    answers_dir: str | None = None,
    judge: str = "keyword",
    refusal: str | None = None,
    refusals: Literal["varied", "direct", "firm"] = "firm",
    min_chars: int = 20,
    target_words: int = 20,
) -> dict:
    """SAPT records from the undefended answers to the train, validation and gate prompts.

    Args:
        work_dir: The demo's folder.
        answers_dir: The ``test`` output folder holding those answers; default ``<work_dir>/eval/answers``.
        judge: The judge whose verdicts (``judgements.<judge>.jsonl``) decide which harmful answers comply.
        refusal: The safe answer of every harmful record; None (default): one refusal of the ``refusals`` pool,
            picked per record by a hash of its id.
        refusals: The pool (:data:`~reminder_lightning.data.refusals.REFUSAL_POOLS`): ``firm`` (default), the 15
            refusals that neither apologise nor open with "I'm"; ``direct``, the 19 without an apology; or
            ``varied``, all 24 of :data:`~reminder_lightning.data.refusals.REFUSALS` (docs/demo.md has each measured).
        min_chars: Shorter answers are left out.
        target_words: The attacker's goals (``data/attack_goals.jsonl``, for ``robustness``) are the train harmful
            records with the first this many words of the model's own compliant answer as the target string.
    """
    if refusals not in REFUSAL_POOLS:
        raise ValueError(f"refusals must be one of {sorted(REFUSAL_POOLS)}, got {refusals!r}.")
    pool = REFUSAL_POOLS[refusals]
    data = Path(work_dir) / "data"
    source = Path(answers_dir) if answers_dir else Path(work_dir) / "eval" / "answers"
    rows = {r["key"]: r for r in read_jsonl(source / "generations.jsonl")}
    verdicts = {v["key"]: v for v in read_jsonl(source / f"judgements.{judge}.jsonl")}
    if not rows:
        raise FileNotFoundError(
            f"No answers in {source / 'generations.jsonl'}: run `test` with the answers config first."
        )
    counts = {}
    for split in ("train", "val", "gate"):
        for side in ("harmful", "benign"):
            out = []
            for prompt in read_jsonl(data / f"{split}_{side}.jsonl"):
                key = f"demo_{split}_{side}/{prompt['id']}"
                if key not in rows or key not in verdicts:
                    raise ValueError(
                        f"{source}: no answer or {judge} verdict for {key}. Fix: rerun `test` with the answers config "
                        "(it resumes) so every train, validation and gate prompt is answered and judged."
                    )
                text = rows[key]["text"].strip()
                if len(text) < min_chars or (side == "harmful" and verdicts[key]["refusal"]):
                    continue
                record = {k: prompt[k] for k in ("id", "question", "image", "category")}
                if side == "harmful":
                    record.update(harmful_answer=text, safe_answer=refusal or refusal_for(prompt["id"], pool))
                else:
                    record["safe_answer"] = text
                out.append(record)
            write_jsonl(data / f"sapt_{split}_{side}.jsonl", out)
            counts[f"{split}_{side}"] = f"{len(out)}/{len(read_jsonl(data / f'{split}_{side}.jsonl'))}"
            if (split, side) == (
                "train",
                "harmful",
            ):  # the attacker's goals: its own compliant openings as targets
                goals = [{**{k: r[k] for k in ("id", "question", "image", "category")},
                          "target": " ".join(r["harmful_answer"].split()[:target_words])} for r in out]  # fmt: skip
                write_jsonl(data / "attack_goals.jsonl", goals)
    print("Demo SAPT records (kept/prompts): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


def _cut(pool: list[Prompt], sizes: tuple[int, ...] | list[int]) -> list[list[Prompt]]:
    """``(train, val, test, gate)`` parts of sizes ``sizes``, taken from the pool test first, then validation, then
    train, then gate: the held-out prompts of a seed stay the same whatever the other sizes, and the train and
    validation prompts whatever the gate's."""
    n_train, n_val, n_test, n_gate = sizes
    start = n_test + n_val + n_train
    return [
        pool[n_test + n_val : start],
        pool[n_test : n_test + n_val],
        pool[:n_test],
        pool[start : start + n_gate],
    ]


def _image(data: Path, prompt: Prompt) -> str:
    """The prompt's typographic image (rendered once), relative to the data folder."""
    path = data / "images" / f"{prompt.id}.png"
    if not path.exists():
        render_typographic(prompt.question, path)
    return f"images/{prompt.id}.png"
