"""``python -m reminder_lightning harden --config configs/harden/<name>.yaml``: adversarial calibration of the gate.

Rounds of attack and refit. Round ``r``: every attack listed, each knowing the defence (an adaptive universal image
fitted on the attacker's ``goals``; an adaptive text suffix searched per goal), is fitted against the gate of round
``r - 1`` (round 0: the trained reminder as given); then the gate is calibrated again (the ``probe`` command with
``probe_config``) with the harmful training and validation answers read once more under each adversarial image made
so far and once per suffix group made so far (a group: one suffix attack's suffixes, taken in turn), counted as
harmful. Each round writes ``round<r>/reminder.safetensors`` (the last one is copied to ``reminder.safetensors``) and
``round<r>/refit.yaml`` (what the refit added to ``probe_config``; the check states of every part it read are kept in
``states/``, so a round runs the model only on its own new inputs); ``harden.json`` and ``harden.md`` report per
round each attack's numbers against the previous gate (P(safe) at the checks, share of checks under the threshold)
and the new gate's validation flags on clean and attacked harmful answers and on benign ones. The soft prompt never
changes: only the gate.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from reminder_lightning.types import import_class

_SPEC_KEYS = {"class_path", "init_args", "label", "max_goals"}


def harden(
    probe_config: str,
    attacks: list[dict[str, Any]],
    goals: str,
    rounds: int = 3,
    output_dir: str = "runs/harden",
) -> dict:
    """Alternate adaptive attacks on the gate and a refit of the gate with the attacked answers as harmful.

    Args:
        probe_config: A ``probe`` config that calibrates the gate inside answers (``position: reminder``,
            ``answers: true``, ``target_fpr``, ``reminder``: the trained artifact). Its ``reminder`` stays the soft
            prompt of every round; its ``output`` and ``reminder_output`` are replaced per round.
        attacks: ``{class_path, init_args, label, max_goals}`` per attack: an attack that takes the defence's
            ``reminder`` artifact and says what it made (``hardening_inputs``: images and suffixes), e.g.
            ``reminder_lightning.attacks.adaptive_pgd.AdaptivePGDAttack`` (a universal image) or
            ``reminder_lightning.attacks.adaptive_gcg.AdaptiveGCGAttack`` (a suffix per goal: ``max_goals`` keeps
            the first goals only, as a per-goal search costs per goal). ``reminder`` is set per round.
        goals: The attacker's training goals (a ``GenericBenchmark`` file with a ``target`` column).
        rounds: Attack-and-refit rounds.
        output_dir: Where each round's attacks and artifact go, and the report.
    """
    import yaml

    from reminder_lightning.commands.probe import main as probe
    from reminder_lightning.evaluation.benchmarks.generic import GenericBenchmark

    if rounds < 1:
        raise ValueError(f"harden: rounds must be >= 1, got {rounds}")
    config = yaml.safe_load(Path(probe_config).read_text())
    if config.get("position") != "reminder" or not config.get("answers") or config.get("target_fpr") is None:
        raise ValueError(
            f"harden: {probe_config} must calibrate the gate inside answers (position: reminder, answers: true, "
            "target_fpr set)."
        )
    specs = [_attack_spec(raw) for raw in attacks]
    if not specs:
        raise ValueError("harden: list at least one attack under `attacks`.")
    out = Path(output_dir)
    samples = GenericBenchmark(goals, name="goals", harmful=True).load()
    gate, images, suffixes, report = str(config["reminder"]), [], [], []
    for r in range(1, rounds + 1):
        folder = out / f"round{r}"
        made = []
        for spec in specs:
            adversary = spec["class"](**{**spec["init_args"], "reminder": gate})
            fitted, work = samples[: spec["max_goals"]], folder / spec["label"]
            adversary.fit(fitted, work)
            inputs = adversary.hardening_inputs(fitted, work)
            images += inputs["images"]
            suffixes += [inputs["suffixes"]] if inputs["suffixes"] else []
            made.append({"label": spec["label"], "goals": len(fitted), **inputs})
        refit = {
            "output": str(folder / "gate.safetensors"),
            "reminder_output": str(folder / "reminder.safetensors"),
            "adversarial_images": list(images),
            "adversarial_suffixes": [list(g) for g in suffixes],
            "states_cache": str(out / "states"),
        }  # fmt: skip: a round reads only its own new inputs
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "refit.yaml").write_text(yaml.safe_dump(refit, allow_unicode=True, width=120))
        calibration = probe(["--config", probe_config, "--config", str(folder / "refit.yaml")])["calibration"]
        adversarial = calibration["adversarial"]
        report.append(
            {
                "round": r,
                "attacked_gate": gate,
                "attacks": made,
                "chosen": calibration["chosen"],
                "threshold": calibration["threshold"],
                "val_fpr": calibration["val_fpr"],
                **{
                    k: adversarial[k]
                    for k in ("val_tpr_clean", "val_tpr_attacked", "val_tpr_images", "val_tpr_suffixes")
                },  # fmt: skip
                "reminder": refit["reminder_output"],
            }
        )
        gate = refit["reminder_output"]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gate, out / "reminder.safetensors")  # the last round's: the hardened reminder
    result = {"probe_config": probe_config, "attacks": attacks, "goals": goals, "rounds": report,
              "reminder": str(out / "reminder.safetensors")}  # fmt: skip
    (out / "harden.json").write_text(json.dumps(result, indent=2))
    (out / "harden.md").write_text(harden_table(result))
    print("\n" + harden_table(result))
    return result


def _attack_spec(raw: dict[str, Any]) -> dict[str, Any]:
    unknown = set(raw) - _SPEC_KEYS
    if unknown or "." not in str(raw.get("class_path", "")):
        raise ValueError(
            f"harden: attack {raw} needs class_path (e.g. reminder_lightning.attacks.adaptive_pgd.AdaptivePGDAttack) "
            f"and may have {sorted(_SPEC_KEYS - {'class_path'})}; unknown: {sorted(unknown)}."
        )
    cls = import_class(raw["class_path"])
    if not hasattr(cls, "hardening_inputs"):
        raise ValueError(
            f"harden: {raw['class_path']} does not say what it made for the refit (no hardening_inputs): use an "
            "adaptive attack (AdaptivePGDAttack, AdaptiveGCGAttack)."
        )
    max_goals = raw.get("max_goals")
    if max_goals is not None and max_goals < 1:
        raise ValueError(f"harden: attack {raw['class_path']} max_goals must be >= 1, got {max_goals}")
    label = raw.get("label") or getattr(cls, "name", cls.__name__)
    return {"class": cls, "init_args": dict(raw.get("init_args") or {}), "max_goals": max_goals,
            "label": re.sub(r"[^A-Za-z0-9_.-]+", "_", label)}  # fmt: skip


def harden_table(result: dict[str, Any]) -> str:
    lines = [
        "| round | attacks vs the previous gate: P(safe) / checks flagged | new gate | validation flagged: harmful "
        "clean / attacked (images, suffixes), benign |",
        "|---|---|---|---|",
    ]
    for r in result["rounds"]:
        attacks = "; ".join(
            f"{a['label']} " + ("-" if a["p_safe"] is None else f"{a['p_safe']:.3f} / {a['gate_rate']:.1%}")
            for a in r["attacks"]
        )
        parts = [f"{r[k]:.1%}" for k in ("val_tpr_images", "val_tpr_suffixes") if r[k] is not None]
        lines.append(
            f"| {r['round']} | {attacks} | {r['chosen']} (threshold {r['threshold']:.3g}) | "
            f"{r['val_tpr_clean']:.1%} / {r['val_tpr_attacked']:.1%} ({', '.join(parts)}), {r['val_fpr']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def main(args: list[str] | None = None):
    from jsonargparse import auto_cli

    return auto_cli(harden, args=args, as_positional=False)
