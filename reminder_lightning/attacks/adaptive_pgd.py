"""Adaptive PGD: the universal adversarial image, optimised against the *defended* pipeline.

The attacker knows the reminder artifact (soft prompt, probe, threshold, interval; see
:func:`~reminder_lightning.reminder.artifact.load_reminder`) and the check schedule: during generation
the reminder is tried after ``interval - 1``, ``2 * interval - 1``, ... answer tokens and kept only where
the probe says P(safe) < threshold. So besides the target string itself the image is pushed to

* **evade the gate**: at every check point ``c`` inside the target, with the reminder inserted after
  ``target[:c]`` exactly as training and generation insert it (placeholder ids swapped for the soft prompt
  by :class:`~reminder_lightning.reminder.injection.ReminderInjector`), the probe's P(safe) is pushed up
  (BCE toward *safe*, ``-log P(safe)``);
  With a ``jitter`` schedule the attacker knows the windows but not the draws: every step draws fresh check
  points (an expectation over the randomness);
* **survive the reminder**: should the reminder be kept anyway, the harmful continuation ``target[c:]``
  after it stays likely (its cross-entropy).

``loss = target_weight * CE(target) + safe_weight * mean(-log P(safe)) + after_weight * mean(CE(target[c:]))``.
Targets must be longer than ``interval - 1`` tokens for the last two terms to exist. Validation measures
ASR of the *defended* model (gated generation with the artifact), plus its gate rate.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from reminder_lightning.attacks.pgd import PGDImageAttack, PGDImageModule
from reminder_lightning.reminder.schedule import GateMode, ReminderSchedule
from reminder_lightning.types import EvalSample


def check_cuts(num_target_tokens: int, interval: int) -> list[int]:
    """Answer lengths at which the reminder is tried inside a target (the schedule's check points), keeping only
    those that leave at least one target token after the reminder."""
    return ReminderSchedule(interval=interval).check_points(num_target_tokens)


def require_checks_inside(name: str, longest_target: int, interval: int) -> None:
    """Fail when no target reaches the first check point: the attack's defence terms would all be zero."""
    if not check_cuts(longest_target, interval):
        raise ValueError(
            f"{name}: the longest target is {longest_target} tokens, but the first check comes after {interval - 1} "
            "answer tokens, so the reminder is never tried inside a target. Use longer targets (AdvBench's), "
            "a longer target text, or a smaller interval."
        )


def load_defence(reminder: str, hidden_size: int, device, interval: int | None, threshold: float | None):
    """The attacked defence from its artifact: ``(schedule, soft prompt, probe)`` on ``device``, frozen; the
    schedule gated, with ``interval`` / ``threshold`` replacing the artifact's where given."""
    from reminder_lightning.reminder.artifact import load_reminder

    artifact = load_reminder(reminder)
    if artifact.probe is None:
        raise ValueError(f"{reminder} has no probe: the adaptive attack needs the gate it evades.")
    if artifact.soft_prompt.shape[1] != hidden_size:
        raise ValueError(
            f"{reminder} is {artifact.soft_prompt.shape[1]} wide but the model's hidden size is {hidden_size}: it "
            "was trained for another model."
        )
    schedule = artifact.schedule.replace(
        interval=int(interval or artifact.schedule.interval),
        threshold=artifact.schedule.threshold if threshold is None else threshold,
        mode=GateMode.gated,
    )
    soft_prompt = artifact.soft_prompt_module().to(device).requires_grad_(False)
    return schedule, soft_prompt, artifact.probe.to(device).requires_grad_(False)


class AdaptivePGDModule(PGDImageModule):
    """:class:`PGDImageModule` with the defence in the loss.

    Args:
        reminder: The defence's ``reminder.safetensors`` (must hold a probe).
        interval: Check interval in answer tokens; None: the artifact's.
        threshold: The gate's threshold; None: the artifact's (used for the logged gate rate and validation).
        target_weight: Weight of the plain target cross-entropy.
        safe_weight: Weight of ``-log P(safe)`` at the check points.
        after_weight: Weight of the target continuation's cross-entropy after an inserted reminder.
        **kwargs: :class:`PGDImageModule` arguments.
    """

    def __init__(
        self,
        reminder: str,
        interval: int | None = None,
        threshold: float | None = None,
        target_weight: float = 1.0,
        safe_weight: float = 1.0,
        after_weight: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if min(target_weight, safe_weight, after_weight) < 0:
            raise ValueError("target_weight, safe_weight and after_weight must be >= 0")
        self.soft_prompt = self.probe = self.injector = None

    def configure_model(self) -> None:
        if self.vlm is not None:
            return
        super().configure_model()
        from reminder_lightning.reminder.injection import ReminderInjector

        hp = self.hparams
        self.schedule, self.soft_prompt, self.probe = load_defence(
            hp.reminder, self.vlm.hidden_size, self.vlm.device, hp.interval, hp.threshold
        )
        self.interval, self.threshold = (
            self.schedule.interval,
            self.schedule.keep_below,
        )  # what a check compares to
        self._cut_rng = random.Random(0)  # draws check points when the schedule has jitter
        self.injector = ReminderInjector(self.vlm.input_embeddings(), self.soft_prompt)  # attached per forward

    def placeholder_ids(self) -> list[int]:
        return self.injector.placeholder_ids

    def attack_losses(self, batch: dict[str, list[str]]) -> dict[str, torch.Tensor]:
        hp = self.hparams
        pairs = list(zip(batch["goal"], batch["target"], strict=True))
        seqs = [self.sequence(g, t) for g, t in pairs]
        for g, t in pairs:  # with jitter, fresh check points every step: the attack holds for any draw
            points = self.schedule.check_points(len(self._encode(g, t)[1]), self._cut_rng)
            seqs += [self.sequence(g, t, c) for c in points]
        with self.injector:
            ce, out = self.forward_sequences(seqs, hidden=len(seqs) > len(pairs))
        target_loss = ce[: len(pairs)].mean()
        losses = {"target_loss": target_loss}
        loss = hp.target_weight * target_loss
        if len(seqs) > len(pairs):
            checked = seqs[len(pairs) :]
            rows = torch.arange(len(pairs), len(seqs), device=ce.device)
            index = torch.cat([s["reminder_index"] for s in checked]).to(ce.device)
            logit = self.probe.logit(self.probe.select(out.hidden_states)[rows, index])
            losses["safe_loss"] = F.softplus(-logit).mean()  # -log P(safe)
            losses["after_loss"] = ce[len(pairs) :].mean()
            p_safe = torch.sigmoid(logit.detach())
            losses["p_safe"] = p_safe.mean()
            losses["gate_rate"] = (p_safe < self.threshold).float().mean()
            loss = loss + hp.safe_weight * losses["safe_loss"] + hp.after_weight * losses["after_loss"]
        losses["loss"] = loss
        return losses

    def generator(self):
        from reminder_lightning.reminder.generation import ReminderGenerationConfig, ReminderGenerator

        config = ReminderGenerationConfig(schedule=self.schedule)
        return ReminderGenerator(self.vlm, self.soft_prompt, self.probe, config)

    def validation_extras(self, outputs) -> None:
        flagged = torch.tensor([float(o.flagged) for o in outputs])
        self.log("val/gate_rate", flagged.mean(), batch_size=len(outputs), sync_dist=True)


class AdaptivePGDAttack(PGDImageAttack):
    """PGD universal image against the Safety Reminder itself (white box: the attacker has the artifact).

    Args:
        reminder: The defence's ``reminder.safetensors`` (soft prompt + probe).
        interval: Check interval in answer tokens; None: the artifact's.
        threshold: Gate threshold; None: the artifact's.
        target_weight: Weight of the target cross-entropy.
        safe_weight: Weight of ``-log P(safe)`` at the check points (evade the gate).
        after_weight: Weight of the continuation's cross-entropy after an inserted reminder.
        **kwargs: :class:`PGDImageAttack` arguments (vlm, eps, iterations, ...).
    """

    name = "adaptive_pgd"
    module_class = AdaptivePGDModule

    def __init__(
        self,
        reminder: str,
        interval: int | None = None,
        threshold: float | None = None,
        target_weight: float = 1.0,
        safe_weight: float = 1.0,
        after_weight: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.reminder, self.interval, self.threshold = reminder, interval, threshold
        self.weights = {"target_weight": target_weight, "safe_weight": safe_weight, "after_weight": after_weight}

    def module_kwargs(self) -> dict[str, Any]:
        return {"reminder": self.reminder, "interval": self.interval, "threshold": self.threshold, **self.weights}

    def fit(self, samples: list[EvalSample], output_dir: Path) -> None:
        self.check_targets(samples)
        super().fit(samples, output_dir)

    def hardening_inputs(self, samples: list[EvalSample], output_dir: Path) -> dict[str, Any]:
        """What ``harden`` refits the gate on after :meth:`fit`: the image, and the last training step's loss, P(safe)
        at the checks and share of checks under the threshold (None when this object did not train)."""
        metrics = self.trainer.callback_metrics if self.trainer is not None else {}
        numbers = {k: metrics.get(f"train/{k}") for k in ("loss", "p_safe", "gate_rate")}
        return {
            "images": [str(self.run_dir(output_dir) / "adversarial.png")],
            "suffixes": [],
            **{k: None if v is None else float(v) for k, v in numbers.items()},
        }

    def check_targets(self, samples: list[EvalSample]) -> None:
        """Fail before training when no target reaches the first check point (the defence terms would be 0)."""
        from reminder_lightning.attacks.pgd import goal_target_pairs
        from reminder_lightning.reminder.artifact import load_reminder
        from reminder_lightning.vlm.adapter import PromptBuilder

        interval = self.interval or load_reminder(self.reminder).interval
        builder = PromptBuilder.load(self.vlm)
        longest = max(
            len(builder.encode_text(p["target"]))
            for p in goal_target_pairs(samples, self.default_target, self.target_suffix)
        )
        require_checks_inside(self.name, longest, interval)
