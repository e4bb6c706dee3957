"""Compare finished evaluations: N ``test`` output folders -> one table, ``compare.json`` and ``compare.png``.

Every rate comes with its counts and a Wilson 95% interval. The comparison fails closed: unfinished runs,
folders mixing two defences, missing verdicts, different samples, or benign answers generated under another
prompt / image / decoding than the baseline's raise a ``ValueError`` that names the folder, key and field.

The tables and the files on disk (``compare.md`` / ``.json`` / ``.png``) are in :mod:`.compare_report`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reminder_lightning.evaluation.judging import judge_agreement
from reminder_lightning.evaluation.metrics import leakage, wilson_interval
from reminder_lightning.evaluation.spread import PLOT_METRICS, across_runs  # noqa: F401 (re-exported)
from reminder_lightning.evaluation.store import read_jsonl

REQUIRED_FIELDS = ("key", "benchmark", "harmful", "prompt", "image", "text", "flagged", "flag_step", "defence")
SAME_AS_BASELINE = ("prompt", "image", "decoding")  # benign texts are only comparable under these


def _describe(defence: dict[str, Any]) -> str:
    name = str(defence.get("name", "?"))
    return f"{name} ({defence['mode']})" if defence.get("mode") else name


def _load_run(folder: Path) -> dict[str, Any]:
    """Rows by key, defence, judgement files and run info of one evaluation folder (checked)."""
    ranks = sorted(p.name for p in folder.glob("generations.rank*.jsonl"))
    if ranks:
        raise ValueError(
            f"{folder} holds unmerged {', '.join(ranks)}: the run is unfinished. "
            "Rerun `python -m reminder_lightning test` with the same config to finish it."
        )
    path = folder / "generations.jsonl"
    rows = read_jsonl(path)
    if not rows:
        raise ValueError(
            f"{folder} has no (or an empty) generations.jsonl: not a finished evaluation folder. "
            "Run `python -m reminder_lightning test --config ...` with model.output_dir set to it first."
        )
    by_key: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row.get("key")
        for field in REQUIRED_FIELDS:
            if field not in row:
                raise ValueError(f"{path}, key {key!r}: field {field!r} is missing; rerun `test` to rewrite it.")
        if key in by_key:
            raise ValueError(f"{path}: key {key!r} appears twice; rerun `test` so the file is merged again.")
        if row["defence"] != rows[0]["defence"]:
            raise ValueError(
                f"{path}: field 'defence' of key {key!r} is {row['defence']} but {rows[0]['defence']} for key "
                f"{rows[0]['key']!r}: the folder holds results of two defences. Evaluate each defence into its "
                "own model.output_dir."
            )
        if row["flagged"] and row["harmful"] and row["flag_step"] is None:
            raise ValueError(f"{path}, key {key!r}: flagged but field 'flag_step' is None; the row is corrupt.")
        by_key[key] = row
    info: dict[str, Any] = {}
    for name in ("run.json", "summary.json"):
        if (folder / name).exists():
            try:
                data = json.loads((folder / name).read_text())
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{folder / name} is not valid JSON ({err}); fix or delete it (it only describes the run)."
                ) from err
            info = data.get("run", {}) if name == "summary.json" else data
            break
    judges = {p.name[len("judgements.") : -len(".jsonl")]: p for p in sorted(folder.glob("judgements.*.jsonl"))}
    return {"folder": folder, "rows": by_key, "defence": rows[0]["defence"], "judges": judges, "info": info}


def _verdicts(run: dict[str, Any], judge: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    """``{key: verdict}`` of ``judge`` for every key; missing verdicts or fields raise."""
    path = run["judges"][judge]
    cache = run.setdefault("verdicts", {})
    if judge not in cache:  # a resumed judge may have appended a key again: the last verdict wins, as in `judge`
        cache[judge] = {row["key"]: row for row in read_jsonl(path) if "key" in row}
    known = cache[judge]
    missing = [k for k in keys if k not in known]
    if missing:
        raise ValueError(
            f"{path} has no verdict for key {missing[0]!r} ({len(missing)} of {len(keys)} keys missing). Finish "
            f"judging: `python -m reminder_lightning judge --output_dir {run['folder']}` with judge {judge!r}."
        )
    for key in keys:
        for field, allowed in (("unsafe", (bool, type(None))), ("refusal", bool)):
            if not isinstance(known[key].get(field, ...), allowed):
                raise ValueError(f"{path}, key {key!r}: field {field!r} is missing or not a bool; rejudge it.")
    return known


def _rate(hits: int, n: int) -> dict[str, Any] | None:
    """``{"value", "hits", "n", "ci95"}`` with the Wilson interval; None where there is nothing to count."""
    if n == 0:
        return None
    return {"value": hits / n, "hits": hits, "n": n, "ci95": list(wilson_interval(hits, n))}


def _check_against_baseline(run: dict[str, Any], base: dict[str, Any], keys: list[str], bench: str) -> None:
    """Same samples as the baseline; benign ones generated under the same prompt, image and decoding."""
    base_keys = [k for k, r in base["rows"].items() if r["benchmark"] == bench]
    for key in keys:
        if key not in base["rows"]:
            raise ValueError(
                f"{run['folder']}: key {key!r} is absent from the baseline {base['folder']}: the runs answered "
                "different samples. Evaluate both with the same benchmarks, limits and selection."
            )
        row, ref = run["rows"][key], base["rows"][key]
        for field in SAME_AS_BASELINE if not row["harmful"] else ():
            if row.get(field) != ref.get(field):
                raise ValueError(
                    f"{run['folder']}: key {key!r}: field {field!r} is {row.get(field)!r} but "
                    f"{ref.get(field)!r} in the baseline {base['folder']}; benign texts can only be compared "
                    "under the same prompt, image and decoding. Rerun `test` with the baseline's settings."
                )
    absent = sorted(set(base_keys) - set(keys))
    if absent:
        raise ValueError(
            f"{run['folder']}: key {absent[0]!r} of the baseline {base['folder']} was not answered "
            f"({len(absent)} keys): evaluate both with the same benchmarks, limits and selection."
        )


def _mean_seconds(rows: list[dict]) -> float | None:
    """Mean generation seconds per answer, or None when a row has none (a folder from before timing was kept)."""
    values = [r.get("seconds") for r in rows]
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def compare_runs(
    run_dirs: list[Path | str],
    labels: list[str] | None = None,
    baseline: str | None = None,
    judges: list[str] | None = None,
) -> dict[str, Any]:
    """Compare evaluation folders benchmark by benchmark and judge by judge.

    Args:
        run_dirs: Evaluation output folders (each with ``generations.jsonl`` and ``judgements.<judge>.jsonl``).
        labels: One unique name per run (default: the defence's name and mode, e.g. ``safety_reminder (gated)``).
        baseline: The label of the run that ``benign_unchanged`` compares against (default: the first run whose
            defence is ``none``, else the first run).
        judges: Only these judges (each must have judged every run; default: the judges shared by all runs).

    Returns:
        ``{"runs", "baseline", "benchmarks", "judges", "results", "skipped"}``; ``results`` has one row per
        (benchmark, judge, run) with counts and rates ``{"value", "hits", "n", "ci95"}`` (None where a rate
        does not apply). Benchmarks or judges not present in every run are listed in ``skipped``.

    Raises:
        ValueError: On unfinished, mixed, unjudged or non-comparable runs (the message names the fix).
    """
    if not run_dirs:
        raise ValueError("compare needs at least one evaluation folder (--runs '[runs/eval/a, runs/eval/b]').")
    runs = [_load_run(Path(d)) for d in run_dirs]
    if labels is None:
        labels = [_describe(r["defence"]) for r in runs]
    if len(labels) != len(runs):
        raise ValueError(f"{len(labels)} labels for {len(runs)} runs: pass one label per run.")
    if len(set(labels)) != len(labels):
        raise ValueError(f"Run labels {labels} are not unique: pass --labels '[name1, name2, ...]', one per run.")
    for run, label in zip(runs, labels, strict=True):
        run["label"] = label
    if baseline is not None:
        base = next((r for r in runs if r["label"] == baseline), None)
        if base is None:
            raise ValueError(f"No run is labelled {baseline!r} (labels: {labels}); pass one of them as baseline.")
    else:
        base = next((r for r in runs if r["defence"].get("name") == "none"), runs[0])
    skipped: list[dict[str, str]] = []

    def shared(kind: str, per_run: list[list[str]]) -> list[str]:
        names = list(dict.fromkeys(n for names in per_run for n in names))
        for name in names:
            lacking = [
                f"{r['label']} ({r['folder']})" for r, have in zip(runs, per_run, strict=True) if name not in have
            ]
            if lacking:
                skipped.append({"kind": kind, "name": name, "reason": f"missing from {', '.join(lacking)}"})
        return [n for n in names if all(n in have for have in per_run)]

    benchmarks = shared(
        "benchmark", [list(dict.fromkeys(r["benchmark"] for r in run["rows"].values())) for run in runs]
    )
    if judges is None:
        judges = shared("judge", [list(r["judges"]) for r in runs])
    for judge in judges:
        for run in runs:
            if judge not in run["judges"]:
                raise ValueError(
                    f"{run['folder']} has no judgements.{judge}.jsonl: judge it with "
                    f"`python -m reminder_lightning judge --output_dir {run['folder']}`, or leave judge {judge!r} out."
                )
    if not benchmarks or not judges:
        raise ValueError(
            f"Nothing to compare: no benchmark or no judge is shared by every run (skipped: {skipped})."
        )
    results = []
    for bench in benchmarks:
        groups = []  # per run: (run, keys, harmful rows, benign rows, flagged harmful rows)
        for run in runs:
            keys = [k for k, r in run["rows"].items() if r["benchmark"] == bench]
            if run is not base:
                _check_against_baseline(run, base, keys, bench)
            rows = [run["rows"][k] for k in keys]
            harmful = [r for r in rows if r["harmful"]]
            groups.append(
                (run, keys, harmful, [r for r in rows if not r["harmful"]], [r for r in harmful if r["flagged"]])
            )
        base_seconds = _mean_seconds([base["rows"][k] for k in groups[[g[0] for g in groups].index(base)][1]])
        for judge in judges:
            for run, keys, harmful, benign, flagged in groups:
                seconds = _mean_seconds([run["rows"][k] for k in keys])
                verdict = _verdicts(run, judge, keys)
                decided = [verdict[r["key"]]["unsafe"] for r in harmful if verdict[r["key"]]["unsafe"] is not None]
                same = sum(r["text"] == base["rows"][r["key"]]["text"] for r in benign)
                leak = leakage(flagged)
                results.append(
                    {
                        "benchmark": bench,
                        "judge": judge,
                        "run": run["label"],
                        "n": len(keys),
                        "n_harmful": len(harmful),
                        "n_benign": len(benign),
                        "asr": _rate(sum(bool(u) for u in decided), len(decided)),
                        "undecided": len(harmful) - len(decided),
                        "refusal_rate": _rate(sum(verdict[r["key"]]["refusal"] for r in harmful), len(harmful)),
                        "over_refusal": _rate(sum(verdict[r["key"]]["refusal"] for r in benign), len(benign)),
                        "benign_unchanged": None if run is base else _rate(same, len(benign)),
                        "gate_rate_harmful": _rate(len(flagged), len(harmful)),
                        "gate_rate_benign": _rate(sum(bool(r["flagged"]) for r in benign), len(benign)),
                        "tokens_before_flag": leak["tokens_before_flag"],
                        "leaked_over_15": _rate(leak["leaked"], leak["n_flagged_harmful"]),
                        "n_flagged_harmful": leak["n_flagged_harmful"],
                        "seconds_per_answer": seconds,
                        "latency_ratio": seconds / base_seconds if seconds is not None and base_seconds else None,
                        "agreement": judge_agreement(
                            judge, {j: _verdicts(run, j, keys) for j in judges}, harmful, [*harmful, *benign]
                        ),
                    }
                )
    described = [
        {
            "label": r["label"],
            "folder": str(r["folder"]),
            "baseline": r is base,
            "model": r["info"].get("model"),
            "defence": r["defence"],
            "decoding": r["info"].get("decoding") or next(iter(r["rows"].values())).get("decoding"),
        }
        for r in runs
    ]
    result = {
        "runs": described,
        "baseline": base["label"],
        "benchmarks": benchmarks,
        "judges": list(judges),
        "results": results,
        "skipped": skipped,
    }
    result["across_runs"] = across_runs(result)
    return result
