"""``python -m reminder_lightning robustness --config configs/robustness/<name>.yaml``: ASR against attack budget.

For every defence, every attack and every budget: the attack is fitted (a universal image on the attacker's
``goals``, or a per-prompt search on the attacked prompts themselves), applied to the held-out harmful ``prompts``,
and the defended model answers them through the generic ``test`` stage (the ``eval_config``'s model, decoding and
judges). Attacks that ignore the defence are fitted once and shared by every defence; attacks that know it
(``adaptive: true``) are fitted against each defence that has a reminder artifact (its ``init_args.artifact``
becomes the attack's ``reminder``), once per artifact: defences that share an artifact and differ only in
generation settings the attack does not model (``fallback_margin``, ``check_at_end``) share its images. They are
not applicable to defences without an artifact. The clean point (budget 0) is every
defence's ``test`` on the ``eval_config``'s own benchmarks, benign ones included.

A budget axis names one attack argument and its values (``steps: {param: iterations, values: [15, 30, 60]}``).
For the argument an attack resumes (its ``budget_resumes``: PGD's ``iterations`` from its last checkpoint, GCG's
``num_steps`` from each prompt's stored search state), one run goes through the values in order and keeps what it
had at each (a copy of the image, the suffixes), so a curve costs one run to its largest budget. ``benign
unchanged`` compares each defence's benign answers with the ``baseline`` defence's (default: ``none`` when listed,
else the first defence; the report names it). Writes
``robustness.md``, ``robustness.json`` and ``robustness.png`` into ``output_dir``; every attack setting is in the
JSON.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from reminder_lightning.types import import_class


def robustness(
    eval_config: str,
    prompts: str,
    goals: str,
    defences: list[dict],
    attacks: list[dict],
    output_dir: str = "runs/robustness",
    max_prompts: int | None = None,
    test_args: list[str] | None = None,
    baseline: str | None = None,
) -> dict:
    """Measure every defence against every attack over its budgets.

    Args:
        eval_config: A ``test`` config (model, decoding, judges; its benchmarks make the clean point).
        prompts: Held-out harmful prompts to attack (a ``GenericBenchmark`` file).
        goals: The attacker's training goals with targets (a ``GenericBenchmark`` file with a ``target`` column),
            for universal attacks; never the held-out prompts.
        defences: ``{label, class_path, init_args}`` per defence, as ``compare`` takes them.
        attacks: ``{label, class_path, init_args, adaptive, fit_on, budgets}`` per attack: ``adaptive`` (the attack
            knows the defence: its reminder artifact, or, for an attack class with ``knows = "defence"``, the
            defence itself; a defence it cannot know is reported as not applicable), ``fit_on`` (``goals``: one
            universal attack; ``prompts``: a search per attacked prompt, as GCG), ``budgets`` (``{axis: {param,
            values}}``), ``max_prompts`` (this attack on fewer held-out prompts than the run's: a per-prompt search
            costs per prompt).
        output_dir: Where attacks, answers and the report go.
        max_prompts: Attack only the first this many held-out harmful prompts (fewer prompts per point).
        test_args: More ``test`` arguments for every run.
        baseline: The defence whose clean benign answers ``benign unchanged`` compares against (default: the one
            labelled or classed ``none``, else the first; the report names it).
    """
    from reminder_lightning.commands.compare import run_defences
    from reminder_lightning.evaluation.benchmarks.generic import GenericBenchmark
    from reminder_lightning.evaluation.robustness_report import collect_points, write_report

    out = Path(output_dir)
    specs = [_attack_spec(a) for a in attacks]
    base = _baseline(defences, baseline)
    held_out = GenericBenchmark(prompts, name="held_out", harmful=True, limit=max_prompts).load()
    goal_samples = GenericBenchmark(goals, name="goals", harmful=True).load()
    clean, labels = run_defences(eval_config, defences, str(out / "clean"), test_args or [])
    runs: list[dict[str, Any]] = []
    made: dict[str, Path] = {}  # attack arguments -> attacked JSONL
    answered: dict[tuple[str, Path], Path] = {}  # (defence, attacked JSONL) -> its test folder
    for spec in specs:
        for defence, label in zip(defences, labels, strict=True):
            known = _knowledge(spec, defence)
            if known is None:
                continue  # the attack cannot know this defence; reported as not applicable
            owner = _safe(label) if spec["adaptive"] else "shared"
            for axis, budget in spec["budgets"].items():
                mine = held_out[: spec["max_prompts"]]  # a per-prompt search may attack fewer
                points = _attacked_sets(spec, axis, budget, owner, known, mine, goal_samples, out, made)
                for value, jsonl in points:
                    folder = answered.get((label, jsonl))
                    if folder is None:  # the same attacked prompts on another axis are answered once
                        folder = out / "runs" / _safe(spec["label"]) / axis / f"{value}" / _safe(label)
                        _test(eval_config, defence, jsonl, folder, test_args or [])
                        answered[(label, jsonl)] = folder
                    runs.append(
                        {"defence": label, "attack": spec["label"], "axis": axis, "param": budget["param"],
                         "budget": value, "folder": str(folder)}
                    )  # fmt: skip
    report = {
        "prompts": prompts,
        "goals": goals,
        "max_prompts": max_prompts,
        "n_prompts": len(held_out),
        "eval_config": eval_config,
        "defences": [{"label": lab, **d} for lab, d in zip(labels, defences, strict=True)],
        "attacks": specs,
        "clean": dict(zip(labels, clean, strict=True)),
        "baseline": labels[base],
        "points": collect_points(runs, dict(zip(labels, clean, strict=True)), specs, labels[base]),
    }
    write_report(report, out)
    return report


def _baseline(defences: list[dict], baseline: str | None) -> int:
    """Index of the defence ``benign unchanged`` compares against (checked before anything runs)."""
    labels = [d.get("label") or d.get("class_path", "").rsplit(".", 1)[-1] for d in defences]
    if baseline is not None:
        if baseline not in labels:
            raise ValueError(f"robustness: baseline {baseline!r} is not a defence label (labels: {labels}).")
        return labels.index(baseline)
    none = [i for i, d in enumerate(defences) if d.get("class_path", "").endswith(".NoDefence")]
    return none[0] if none else 0


def _knows(class_path: str) -> str:
    """What an adaptive attack class knows of the defence: ``reminder`` (its artifact) or ``defence`` (itself)."""
    return getattr(import_class(class_path), "knows", "reminder")


def _attack_spec(raw: dict) -> dict:
    unknown = set(raw) - {"label", "class_path", "init_args", "adaptive", "fit_on", "budgets", "max_prompts"}
    if unknown or "class_path" not in raw:
        raise ValueError(
            f"robustness: attack {raw} needs class_path and may have label, init_args, adaptive, fit_on, budgets, "
            f"max_prompts (unknown: {sorted(unknown)})."
        )
    spec = {
        "label": raw.get("label") or raw["class_path"].rsplit(".", 1)[-1],
        "class_path": raw["class_path"],
        "init_args": dict(raw.get("init_args") or {}),
        "adaptive": bool(raw.get("adaptive", False)),
        "knows": _knows(raw["class_path"]),
        "fit_on": raw.get("fit_on", "goals"),
        "budgets": dict(raw.get("budgets") or {}),
        "max_prompts": raw.get("max_prompts"),
    }
    if spec["max_prompts"] is not None and (not isinstance(spec["max_prompts"], int) or spec["max_prompts"] < 1):
        raise ValueError(f"robustness: attack {spec['label']}: max_prompts must be a positive integer.")
    if spec["fit_on"] not in ("goals", "prompts"):
        raise ValueError(f"robustness: attack {spec['label']}: fit_on must be 'goals' or 'prompts'.")
    if not spec["budgets"]:
        raise ValueError(f"robustness: attack {spec['label']} has no budgets (e.g. steps: {{param: iterations, "
                         "values: [15, 30, 60]}).")  # fmt: skip
    for axis, budget in spec["budgets"].items():
        if set(budget) != {"param", "values"} or not budget["values"]:
            raise ValueError(f"robustness: attack {spec['label']} budget {axis!r} needs param and values.")
        if budget["values"] != sorted(budget["values"]):
            raise ValueError(f"robustness: attack {spec['label']} budget {axis!r}: values must increase.")
    return spec


def _attacked_sets(spec, axis, budget, owner, known, held_out, goal_samples, out, made):
    """Yield (budget value, attacked JSONL) for one attack, budget axis and owner (a defence, or shared); ``made``
    maps an attack's full arguments to the JSONL already made with them; ``known``: the arguments that tell an adaptive
    attack the defence (its ``reminder`` artifact, or the ``defence`` itself)."""
    from reminder_lightning.commands.attack import write_samples

    cls = import_class(spec["class_path"])
    base = out / "attacks" / _safe(spec["label"]) / owner / axis
    param = budget["param"]
    resumable = getattr(cls, "budget_resumes", None) == param
    for value in budget["values"]:
        done = base / f"{value}" / "attacked.jsonl"
        args = {**spec["init_args"], param: value, **known}
        record = _record(spec, args, held_out, goal_samples)
        key = json.dumps(record, sort_keys=True, default=str)
        # Another budget axis, or another defence with the same artifact (settings the attack does not model, such as
        # fallback_margin or check_at_end, differ), made this very point: same attack, arguments and artifact.
        if key in made:
            yield value, made[key]
            continue
        if done.exists():  # a rerun keeps what was attacked, if the same attack made it
            _same_record(done.parent / "attack.json", record)
            made[key] = done
            yield value, done
            continue
        if resumable:  # one run through the values; what it had at each budget is copied out below
            _same_record(base / "run.json", {**record, "arguments": {**record["arguments"], param: None}})
            args["resume"] = True
            if "run_name" in cls.__init__.__code__.co_varnames:
                args["run_name"] = "run"
        run_dir = base if resumable else base / f"{value}"
        attack = cls(**args)
        attack.fit(held_out if spec["fit_on"] == "prompts" else goal_samples, run_dir)
        attacked = attack.apply(held_out, run_dir)
        folder = base / f"{value}"
        folder.mkdir(parents=True, exist_ok=True)
        for s in attacked:  # images beside the JSONL (a benchmark reads images inside its folder only)
            if isinstance(s.image, str) and Path(s.image).parent != folder.absolute():
                copy = folder / Path(s.image).name
                if not copy.exists():
                    shutil.copyfile(s.image, copy)
                s.image = str(copy.absolute())
        write_samples(attacked, done)
        _same_record(done.parent / "attack.json", record)
        made[key] = done
        yield value, done


def _record(spec: dict, args: dict, held_out: list, goal_samples: list) -> dict:
    """What an attacked set depends on: the attack and its arguments, the artifact's content, the prompts."""
    from reminder_lightning.reminder.artifact import file_sha256

    artifact = args.get("reminder")
    return {
        "class_path": spec["class_path"],
        "arguments": json.loads(json.dumps(args, sort_keys=True, default=str)),
        "artifact_sha256": file_sha256(artifact) if artifact else None,
        **({"defence_files_sha256": _files_sha256(args["defence"]["init_args"])} if args.get("defence") else {}),
        "fit_on": spec["fit_on"],
        "prompts": [s.id for s in held_out],
        "goals": [s.id for s in goal_samples] if spec["fit_on"] == "goals" else None,
    }


def _knowledge(spec: dict, defence: dict) -> dict | None:
    """The arguments that tell the attack the defence it attacks (``{}``: it ignores the defence; None: it cannot
    know this one). ``knows: reminder`` (adaptive PGD and GCG) takes the defence's reminder artifact; ``knows:
    defence`` (defence-aware PGD) takes the defence itself, if its class has an attack surface."""
    if not spec["adaptive"]:
        return {}
    init_args = defence.get("init_args") or {}
    if spec["knows"] == "reminder":
        return {"reminder": init_args["artifact"]} if init_args.get("artifact") else None
    if not import_class(defence["class_path"]).has_attack_surface():
        return None
    return {"defence": {"class_path": defence["class_path"], "init_args": init_args}}


def _files_sha256(init_args: dict) -> dict[str, str]:
    """SHA-256 of every file a defence's arguments name (a folder: its files), so a retrained adapter at the same
    path is never answered with images fitted through the old one."""
    from reminder_lightning.reminder.artifact import file_sha256

    hashes = {}
    for value in init_args.values():
        if isinstance(value, str) and Path(value).exists():
            path = Path(value)
            for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if f.is_file():
                    hashes[str(f)] = file_sha256(str(f))
    return hashes


def _same_record(path: Path, record: dict) -> None:
    """Write ``record`` to ``path``, or check that the one there is the same (fail closed on a stale folder)."""
    if path.exists():
        old = json.loads(path.read_text())
        if old != record:
            changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise ValueError(
                f"robustness: {path.parent} was made by another attack setting (differs in {changed}). Fix: remove "
                f"{path.parent}, or give this run another output_dir."
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))


def _test(eval_config: str, defence: dict, jsonl: Path, folder: Path, test_args: list[str]) -> None:
    from reminder_lightning.cli import main as cli

    benchmark = {
        "class_path": "reminder_lightning.evaluation.benchmarks.generic.GenericBenchmark",
        "init_args": {"path": str(jsonl), "name": "attacked", "harmful": True},
    }
    spec = {"class_path": defence["class_path"], "init_args": defence.get("init_args") or {}}
    print(f"\n== {folder}")
    cli(
        ["test", "--config", eval_config, f"--data.benchmarks=[{json.dumps(benchmark)}]",
         f"--model.defence={json.dumps(spec)}", f"--model.output_dir={folder}", *test_args]
    )  # fmt: skip


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(label))


def main(args: list[str] | None = None):
    from jsonargparse import auto_cli

    return auto_cli(robustness, args=args, as_positional=False)
