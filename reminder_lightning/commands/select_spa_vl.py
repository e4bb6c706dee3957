"""``python -m reminder_lightning select-spa-vl``: the reference's SPA-VL selection (7 category groups, pairs
Llama Guard vouches for, a stratified draw of 1000).

The reference code (its ``script/SPA_VL_preprocess``) keeps the train pairs whose ``class1/class2/class3`` falls in
one of seven groups (:data:`REFERENCE_GROUPS`), judges ``rejected`` and ``chosen`` with Llama Guard 3, keeps a
pair only when ``rejected`` is unsafe **and** ``chosen`` is safe, and draws per group a seeded sample of
:data:`REFERENCE_QUOTAS` (1000 in all; a group with fewer qualifying pairs gives all it has) by ``datasets``'
``shuffle(seed=42)``, which :func:`reference_draw` reproduces. SAPT then draws its
256 harmful examples from those.

:func:`select_spa_vl` does the same through this package's judges (any :class:`Judge`; the recipe uses
``LlamaGuard3Judge``). Verdicts are cached per pair, answer and judge in ``<output>.judgements.jsonl`` as they
come, so an interrupted run resumes without judging anything twice. An answer the judge cannot decide
(``unsafe`` None) disqualifies its pair and is counted. The output JSON names the source, judge, seed, quotas,
per-group counts and the selected ids, which ``SPAVLTrain(selection=...)`` reads back.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from reminder_lightning.data.records import Record
from reminder_lightning.evaluation.judges.base import Judge
from reminder_lightning.evaluation.store import read_jsonl

#: The reference's groups: group -> ``class1/class2/class3`` categories (SPA-VL's spelling, typos included).
REFERENCE_GROUPS: dict[str, tuple[str, ...]] = {
    "Illegal Activity": (
        "Malicious Use/Illegal activities/drug-related crimes",
        "Malicious Use/Illegal activities/environmental crimes",
        "Malicious Use/Illegal activities/financial crimes",
        "Malicious Use/Illegal activities/theft",
        "Malicious Use/Illegal activities/traffic and driving offenses",
        "Malicious Use/Security threats/biological and chemical harms",
        "Malicious Use/Security threats/weapon",
    ),
    "Hate Speech": tuple(
        f"Representation & ToxicityHarms/{c}"
        for c in (
            "Toxic/bully",
            "Toxic/harass",
            "Toxic/hate",
            "Toxic/insult",
            "Toxic/terrorism",
            "Toxic/threaten",
            "Toxic/violent",
            "Unfair/ageism",
            "Unfair/disablity discrimination",
            "Unfair/geographical discrimination",
            "Unfair/racial",
            "Unfair/religion",
            "Unfair/sexism",
        )
    ),  # fmt: skip
    "Malware Generation": ("Malicious Use/Security threats/malware", "Malicious Use/Security threats/cyber"),
    "Physical Harm": ("Human Autonomy & IntegrityHarms/Persuasion and manipulation/physical harm",),
    "Economic Harm": tuple(
        f"Socioeconomic Harms/Risky financial practices/{c}"
        for c in ("gamble", "multi-level marketing", "paypal lending")
    ),
    "Fraud": tuple(
        f"Malicious Use/Fraud or deceptive action/{c}"
        for c in (
            "academic dishonesty",
            "disinformation",
            "fake news",
            "financial fraud",
            "pseudo-pharmaceuticals",
            "rumors",
            "scamns",
            "spam information",
        )
    ),  # fmt: skip
    "Privacy Violation": ("Information & Safety Harms/Privacy/personal privacy",),
}
#: Pairs drawn per group (the reference's ``categories_nums``; 1000 in all).
REFERENCE_QUOTAS: dict[str, int] = {
    "Illegal Activity": 200,
    "Hate Speech": 150,
    "Malware Generation": 150,
    "Physical Harm": 100,
    "Economic Harm": 100,
    "Fraud": 200,
    "Privacy Violation": 100,
}


def group_of(category: str | None, groups: dict[str, tuple[str, ...]] = REFERENCE_GROUPS) -> str | None:
    """The group a ``class1/class2/class3`` category belongs to, or None."""
    for group, members in groups.items():
        if category in members:
            return group
    return None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def judge_pairs(
    records: list[Record], judge: Judge, cache: Path, batch_size: int = 16
) -> dict[tuple[str, str], bool | None]:
    """``(record id, "rejected" | "chosen") -> unsafe`` for every record, judging only what ``cache`` lacks
    (a cached verdict counts only for the same judge and the same answer text)."""
    from tqdm.auto import tqdm

    done: dict[tuple[str, str, str], bool | None] = {}
    if cache.exists():
        for row in read_jsonl(cache):
            if row["judge"] == judge.name:
                done[(row["id"], row["which"], row["sha"])] = row["unsafe"]
    todo = []
    for r in records:
        for which, answer in (("rejected", r.harmful_answer or ""), ("chosen", r.safe_answer)):
            if (r.id, which, _sha(answer)) not in done:
                todo.append((r, which, answer))
    cache.parent.mkdir(parents=True, exist_ok=True)
    with (
        cache.open("a", encoding="utf-8") as f,
        tqdm(total=len(todo), desc=f"judging pairs ({judge.name})") as bar,
    ):
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            verdicts = judge.judge([r.question for r, _, _ in chunk], [a for _, _, a in chunk])
            for (r, which, answer), verdict in zip(chunk, verdicts, strict=True):
                done[(r.id, which, _sha(answer))] = verdict.unsafe
                row = {
                    "id": r.id,
                    "which": which,
                    "sha": _sha(answer),
                    "judge": judge.name,
                    "unsafe": verdict.unsafe,
                }
                f.write(json.dumps(row) + "\n")
            f.flush()
            bar.update(len(chunk))
    return {
        (r.id, which): done[(r.id, which, _sha(answer))]
        for r in records
        for which, answer in (("rejected", r.harmful_answer or ""), ("chosen", r.safe_answer))
    }


def reference_draw(n: int, quota: int, seed: int) -> list[int]:
    """The indices the reference draws from ``n`` qualified pairs: ``datasets``' ``shuffle(seed)`` (NumPy's
    ``default_rng(seed).permutation(n)``) then the first ``quota`` (all when fewer)."""
    import numpy as np

    return [int(i) for i in np.random.default_rng(seed).permutation(n)[:quota]]


def select_pairs(
    records: list[Record],
    verdicts: dict[tuple[str, str], bool | None],
    quotas: dict[str, int],
    groups: dict[str, tuple[str, ...]] = REFERENCE_GROUPS,
    seed: int = 42,
) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The selected ids (group by group, in file order before the draw, each group drawn as the reference does:
    :func:`reference_draw`) and per-group counts: ``candidates`` (in the
    group), ``undecided`` (an answer the judge could not decide), ``qualified`` (rejected unsafe and chosen safe),
    ``selected``."""
    unknown = set(quotas) - set(groups)
    if unknown:
        raise ValueError(f"quotas name groups that do not exist: {sorted(unknown)}; groups: {sorted(groups)}.")
    ids: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    for group, quota in quotas.items():
        members = [r for r in records if group_of(r.category, groups) == group]
        pairs = [(verdicts[(r.id, "rejected")], verdicts[(r.id, "chosen")]) for r in members]
        qualified = [r.id for r, (rej, cho) in zip(members, pairs, strict=True) if rej is True and cho is False]
        drawn = [qualified[i] for i in reference_draw(len(qualified), quota, seed)]
        counts[group] = {
            "candidates": len(members),
            "undecided": sum(rej is None or cho is None for rej, cho in pairs),
            "qualified": len(qualified),
            "selected": len(drawn),
            "quota": quota,
        }
        ids += drawn
    return ids, counts


def select_spa_vl(
    path: str,
    judge: Judge,
    output: str = "data/spa_vl/selection.json",
    meta: str | None = None,
    quotas: dict[str, int] | None = None,
    seed: int = 42,
    batch_size: int = 16,
    limit: int | None = None,
) -> dict:
    """Select SPA-VL train pairs as the reference does and write ``output`` (see the module docstring).

    Args:
        path: SPA-VL's train data (as :class:`~reminder_lightning.data.spa_vl.SPAVLTrain` reads it).
        judge: Judges ``rejected`` (must be unsafe) and ``chosen`` (must be safe); the reference: Llama Guard 3.
        output: The selection JSON; verdicts are cached beside it in ``<output>.judgements.jsonl``.
        meta: ``train.zip``'s ``meta.json``, for the categories of hub-parquet rows.
        quotas: Pairs per group; default :data:`REFERENCE_QUOTAS`.
        seed: Seed of the per-group draw (the reference's: 42; with the same verdicts the same pairs are drawn).
        batch_size: Answers per judge call.
        limit: Read only the first ``limit`` rows (for a trial run).
    """
    from reminder_lightning.data.spa_vl import SPAVLTrain

    quotas = dict(REFERENCE_QUOTAS if quotas is None else quotas)
    records = SPAVLTrain(path, limit=limit, meta=meta).load()
    uncategorised = [r.id for r in records if not r.category]
    if uncategorised:
        raise ValueError(
            f"{path}: {len(uncategorised)} records have no category (first: {uncategorised[0]!r}), so no group. Fix: "
            "pass `meta` (train.zip's meta.json) for the hub parquet files."
        )
    candidates = [r for r in records if group_of(r.category) in quotas]
    out = Path(output)
    verdicts = judge_pairs(candidates, judge, out.with_name(out.name + ".judgements.jsonl"), batch_size)
    ids, counts = select_pairs(candidates, verdicts, quotas, seed=seed)
    report = {
        "source": str(path),
        "judge": judge.name,
        "seed": seed,
        "records": len(records),
        "groups": counts,
        "ids": ids,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    width = max(len(g) for g in counts)
    print(f"SPA-VL selection ({judge.name}, seed {seed}): {len(ids)} pairs -> {out}")
    for group, c in counts.items():
        print(f"  {group:<{width}}  {c['selected']:>4} of {c['qualified']:>5} qualified ({c['candidates']} in group, "
              f"{c['undecided']} undecided; quota {c['quota']})")  # fmt: skip
    return report


def main(args: list[str] | None = None) -> dict:
    from jsonargparse import auto_cli

    return auto_cli(select_spa_vl, args=args, as_positional=False)
