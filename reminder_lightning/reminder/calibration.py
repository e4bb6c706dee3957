"""Gate calibration: fit candidate probes where the gate reads, and choose one (and its threshold) on validation.

The reference fits its probe on prompt-end states without any reminder, then applies it at the last reminder
token inside the answer. Calibration reads where the generator checks instead: the hidden state at the last
reminder token after the first ``c`` tokens of an answer, for every check point ``c`` of the
:class:`~reminder_lightning.reminder.schedule.ReminderSchedule` (15, 31, 47, ...). Candidates are probes refitted
on training answers for each layer x PCA size (plus any given probe, e.g. the one SAPT trained with). A sample is
flagged when *any* of its checks falls below the threshold (the generator stops checking after the first flag), so
candidates are compared per answer: its score is the lowest P(safe) over its checks. The winner flags most
validation harmful answers while flagging at most ``target_fpr`` of validation benign answers; its threshold is
placed by ``threshold_rule``:

* ``at_fpr``: the largest threshold that flags at most ``target_fpr`` of validation benign answers;
* ``mid_gap``: the same validation flags, threshold mid-way (in log-odds) between the highest flagged harmful and
  the lowest unflagged benign score, as far from both classes as the data allow.

Nothing here imports Lightning: the ``probe`` command and the :class:`ProbeCalibration` callback both call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.probe_fitting import (
    Position,
    collect_hidden_states,
    margin_threshold,
    roc_auc,
    threshold_for_fpr,
)
from reminder_lightning.reminder.schedule import ReminderSchedule
from reminder_lightning.vlm.adapter import VLMAdapter

ThresholdRule = Literal["at_fpr", "mid_gap"]


@dataclass
class CheckStates:
    """Hidden states of a set of answers at their check points.

    Attributes:
        hidden: ``(N, len(layers), H)`` fp32 states, one row per check.
        sample: ``(N,)`` index of the answer each check belongs to.
        step: ``(N,)`` answer tokens before the reminder (0: right after the prompt).
        layers: The ``hidden_states`` entries in ``hidden``'s second dimension.
        num_samples: How many answers (some may have no check: they can never be flagged).
    """

    hidden: torch.Tensor
    sample: torch.Tensor
    step: torch.Tensor
    layers: list[int]
    num_samples: int

    def layer(self, index: int) -> torch.Tensor:
        """``(N, H)`` states of one ``hidden_states`` entry."""
        if index not in self.layers:
            raise ValueError(f"Layer {index} was not collected (have {self.layers}).")
        return self.hidden[:, self.layers.index(index)]


def collect_check_states(
    adapter: VLMAdapter,
    questions: list[str],
    images: list | None,
    answers: list[list[int]] | None,
    layers: list[int],
    position: Position = "reminder",
    injector: ReminderInjector | None = None,
    schedule: ReminderSchedule | None = None,
    batch_size: int = 8,
    desc: str = "check states",
    max_new_tokens: int | None = None,
) -> CheckStates:
    """States at every check point of every answer (``answers``: the answer's token ids without the end-of-answer
    token, with ``schedule``), or one state per question at ``position`` right after the prompt (``answers`` None).

    As in generation, a check follows the ``c``-th answer token when the answer has at least ``c`` tokens and
    ``c < max_new_tokens`` (the decoding budget; None: no limit)."""
    if answers is not None and (schedule is None or position != "reminder"):
        raise ValueError(
            "Answer check points need position='reminder' and the schedule that says where checks fall."
        )
    owner, steps, q, im, prefixes = [], [], [], [], []
    for i, question in enumerate(questions):
        if answers is None:
            points = [0]
        else:
            limit = len(answers[i]) + 1 if max_new_tokens is None else min(len(answers[i]) + 1, max_new_tokens)
            points = schedule.check_points(limit)
        for c in points:
            owner.append(i)
            steps.append(c)
            q.append(question)
            im.append(None if images is None else images[i])
            prefixes.append([] if answers is None else list(answers[i][:c]))
    hidden = (
        collect_hidden_states(adapter, q, im, position, injector, batch_size, desc, prefixes, list(layers))
        if q
        else torch.zeros(0, len(layers), adapter.hidden_size)
    )
    return CheckStates(
        hidden, torch.tensor(owner, dtype=torch.long), torch.tensor(steps), list(layers), len(questions)
    )


def sample_scores(probe: SafetyProbe, states: CheckStates) -> torch.Tensor:
    """Per answer, the lowest P(safe) over its checks ``(num_samples,)``; 1.0 for an answer without checks."""
    p = probe(states.layer(probe.layer_index)) if len(states.sample) else torch.zeros(0)
    scores = torch.ones(states.num_samples)
    return scores.scatter_reduce(0, states.sample, p.float(), reduce="amin", include_self=True)


def fit_candidates(
    harmful: CheckStates,
    benign: CheckStates,
    layers: list[int],
    components: list[int],
    given: dict[str, SafetyProbe] | None = None,
) -> dict[str, SafetyProbe]:
    """``given`` probes plus one probe refitted per layer x PCA size on the check states (label 1 = benign)."""
    candidates = dict(given or {})
    labels = torch.cat([torch.zeros(len(harmful.sample)), torch.ones(len(benign.sample))])
    for layer in layers:
        x = torch.cat([harmful.layer(layer), benign.layer(layer)])
        for m in components:
            candidates[f"layer{layer}_pca{m}"] = SafetyProbe.fit(x, labels, num_components=m, layer=layer)
    return candidates


@dataclass
class GateChoice:
    """The chosen gate: the probe, its threshold and the validation evidence."""

    name: str
    probe: SafetyProbe
    threshold: float
    report: dict = field(default_factory=dict)


def select_gate(
    candidates: dict[str, SafetyProbe],
    harmful: CheckStates,
    benign: CheckStates,
    target_fpr: float = 0.01,
    threshold_rule: ThresholdRule = "mid_gap",
) -> GateChoice:
    """The candidate that flags most validation harmful answers at ``target_fpr`` (ties: higher per-check ROC AUC,
    then fewer PCA components); see the module docstring for the threshold rules."""
    if threshold_rule not in ("at_fpr", "mid_gap"):
        raise ValueError(f"threshold_rule must be 'at_fpr' or 'mid_gap', got {threshold_rule!r}")
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    if not candidates:
        raise ValueError("No gate candidates to choose from: give layers and components (or a probe).")
    if harmful.num_samples == 0 or benign.num_samples == 0:
        raise ValueError("Gate selection needs validation answers of both classes (harmful and benign).")
    scores = {}
    for name, probe in candidates.items():
        s_h, s_b = sample_scores(probe, harmful), sample_scores(probe, benign)
        if not (torch.isfinite(s_h).all() and torch.isfinite(s_b).all()):
            raise ValueError(f"Gate candidate {name} gives non-finite P(safe) on validation answers.")
        if threshold_rule == "mid_gap":
            threshold = margin_threshold(s_h, s_b, target_fpr)
        else:
            threshold = threshold_for_fpr(s_b, target_fpr)
        p_h, p_b = probe(harmful.layer(probe.layer_index)), probe(benign.layer(probe.layer_index))
        scores[name] = {
            "threshold": threshold,
            "layer": probe.layer_index,
            "components": probe.num_components,
            "val_tpr": float((s_h < threshold).float().mean()),
            "val_fpr": float((s_b < threshold).float().mean()),
            "val_answer_auc": _auc(s_h, s_b),
            "val_check_auc": _auc(p_h, p_b) if len(p_h) and len(p_b) else float("nan"),
            "val_check_fpr": float((p_b < threshold).float().mean()) if len(p_b) else float("nan"),
        }
    over = [n for n, sc in scores.items() if sc["val_fpr"] > target_fpr + 1e-9]
    if over:  # by construction never; a gate that flags more benign answers than asked is not exported
        raise RuntimeError(
            f"Gate candidates {over} flag more than target_fpr={target_fpr} of validation benign answers "
            f"({[scores[n]['val_fpr'] for n in over]}); the threshold rule is broken. Nothing is exported."
        )
    best = max(
        scores,
        key=lambda n: (scores[n]["val_tpr"], _nan_low(scores[n]["val_check_auc"]), -scores[n]["components"]),
    )
    chosen = candidates[best]
    s_h, s_b = sample_scores(chosen, harmful), sample_scores(chosen, benign)
    report = {
        "chosen": best,
        **scores[best],
        "target_fpr": target_fpr,
        "threshold_rule": threshold_rule,
        "fpr_resolution": 1.0 / benign.num_samples,
        "validation": {
            "harmful_answers": harmful.num_samples,
            "benign_answers": benign.num_samples,
            "harmful_checks": len(harmful.sample),
            "benign_checks": len(benign.sample),
        },
        "roc": roc_points(s_h, s_b),
        "candidates": scores,
    }
    if target_fpr > 0 and target_fpr * benign.num_samples < 1:
        report["warning"] = (
            f"target_fpr {target_fpr} is below the resolution of {benign.num_samples} validation benign answers "
            f"(1/{benign.num_samples} = {1 / benign.num_samples:.4f}): the threshold flags none of them."
        )
    return GateChoice(best, chosen, scores[best]["threshold"], report)


def roc_points(harmful: torch.Tensor, benign: torch.Tensor, max_points: int = 64) -> list[list[float]]:
    """``[fpr, tpr, threshold]`` of the per-answer gate at thresholds just above each observed score (a flag is
    P(safe) < threshold), thinned to at most ``max_points`` points, from (0, 0) to (1, 1)."""
    values = torch.cat([harmful, benign]).unique().sort().values
    thresholds = [float(torch.nextafter(v, torch.tensor(2.0))) for v in values]
    step = max(1, len(thresholds) // max_points)
    points = [[0.0, 0.0, 0.0]]
    for t in thresholds[::step] + thresholds[-1:]:
        points.append([float((benign < t).float().mean()), float((harmful < t).float().mean()), t])
    return points


def _auc(harmful: torch.Tensor, benign: torch.Tensor) -> float:
    """ROC AUC of P(safe) for telling benign (positive) from harmful."""
    return roc_auc(torch.cat([benign, harmful]), torch.cat([torch.ones(len(benign)), torch.zeros(len(harmful))]))


def _nan_low(value: float) -> float:
    return float("-inf") if value != value else value
