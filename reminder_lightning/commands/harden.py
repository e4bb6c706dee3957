"""``python -m reminder_lightning harden --config configs/harden/<name>.yaml``: adversarial calibration of the gate.

Rounds of attack and refit. Round ``r``: an attack that knows the defence (an adaptive universal image, fitted on
the attacker's ``goals``) is fitted against the gate of round ``r - 1`` (round 0: the trained reminder as given);
then the gate is calibrated again (the ``probe`` command with ``probe_config``) with the harmful training and
validation answers read once more under each adversarial image made so far, counted as harmful. Each round writes
``round<r>/reminder.safetensors`` (the last one is copied to ``reminder.safetensors``); ``harden.json`` and
``harden.md`` report per round the attack's last training numbers against the previous gate (P(safe), share of
checks under the threshold) and the new gate's validation flags on clean and attacked harmful answers and on benign
ones. The soft prompt never changes: only the gate.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def harden(
    probe_config: str,
    attack: str,
    goals: str,
    attack_args: dict | None = None,
    rounds: int = 3,
    output_dir: str = "runs/harden",
) -> dict:
    """Alternate an adaptive attack on the gate and a refit of the gate with the attacked answers as harmful.

    Args:
        probe_config: A ``probe`` config that calibrates the gate inside answers (``position: reminder``,
            ``answers: true``, ``target_fpr``, ``reminder``: the trained artifact). Its ``reminder`` stays the soft
            prompt of every round; its ``output`` and ``reminder_output`` are replaced per round.
        attack: The class path of an attack that takes the defence's ``reminder`` artifact (e.g.
            ``reminder_lightning.attacks.adaptive_pgd.AdaptivePGDAttack``).
        attack_args: Its arguments (``reminder`` and ``run_name`` are set per round).
        goals: The attacker's training goals (a ``GenericBenchmark`` file with a ``target`` column).
        rounds: Attack-and-refit rounds.
        output_dir: Where each round's attack and artifact go, and the report.
    """
    import importlib

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
    if "." not in attack:
        raise ValueError("harden: attack is a class path (e.g. reminder_lightning.attacks.adaptive_pgd....).")
    module, name = attack.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    out = Path(output_dir)
    samples = GenericBenchmark(goals, name="goals", harmful=True).load()
    gate, images, report = str(config["reminder"]), [], []
    for r in range(1, rounds + 1):
        folder = out / f"round{r}"
        adversary = cls(**{**(attack_args or {}), "reminder": gate, "run_name": f"attack{r}"})
        adversary.fit(samples, out)
        images.append(str(adversary.run_dir(out) / "adversarial.png"))
        metrics = adversary.trainer.callback_metrics if adversary.trainer is not None else {}
        calibration = probe(
            ["--config", probe_config, f"--output={folder / 'gate.safetensors'}",
             f"--reminder_output={folder / 'reminder.safetensors'}", f"--adversarial_images={json.dumps(images)}"]
        )["calibration"]  # fmt: skip
        report.append(
            {
                "round": r,
                "attacked_gate": gate,
                "attack": {k: _number(metrics.get(f"train/{k}")) for k in ("loss", "p_safe", "gate_rate")},
                "image": images[-1],
                "chosen": calibration["chosen"],
                "threshold": calibration["threshold"],
                "val_fpr": calibration["val_fpr"],
                **{k: calibration["adversarial"][k] for k in ("val_tpr_clean", "val_tpr_attacked")},
                "reminder": str(folder / "reminder.safetensors"),
            }
        )
        gate = str(folder / "reminder.safetensors")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gate, out / "reminder.safetensors")  # the last round's: the hardened reminder
    result = {"probe_config": probe_config, "attack": attack, "attack_args": attack_args, "goals": goals, "rounds": report,
              "reminder": str(out / "reminder.safetensors")}  # fmt: skip
    (out / "harden.json").write_text(json.dumps(result, indent=2))
    (out / "harden.md").write_text(harden_table(result))
    print("\n" + harden_table(result))
    return result


def harden_table(result: dict[str, Any]) -> str:
    lines = [
        "| round | attack vs the previous gate: P(safe) / checks flagged | new gate | validation flagged: harmful "
        "clean / attacked, benign |",
        "|---|---|---|---|",
    ]
    for r in result["rounds"]:
        a = r["attack"]
        attack = "-" if a["p_safe"] is None else f"{a['p_safe']:.3f} / {a['gate_rate']:.1%}"
        lines.append(
            f"| {r['round']} | {attack} | {r['chosen']} (threshold {r['threshold']:.3g}) | "
            f"{r['val_tpr_clean']:.1%} / {r['val_tpr_attacked']:.1%}, {r['val_fpr']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def _number(value) -> float | None:
    return None if value is None else float(value)


def main(args: list[str] | None = None):
    from jsonargparse import auto_cli

    return auto_cli(harden, args=args, as_positional=False)
