"""Gate calibration, part two: choose a candidate probe and its threshold on validation answers.

Candidates (:func:`~reminder_lightning.reminder.calibration.fit_candidates`) are compared per answer (its lowest
P(safe) over its checks). The winner flags most validation harmful answers while flagging at most ``target_fpr``
of validation benign answers; its threshold is placed by ``threshold_rule``:

* ``at_fpr``: the largest threshold that flags at most ``target_fpr`` of validation benign answers;
* ``mid_gap``: the same validation flags, threshold mid-way (in log-odds) between the highest flagged harmful and
  the lowest unflagged benign score, as far from both classes as the data allow.

:func:`select_gate` chooses among probes fitted on training answers; :func:`cross_fit_gate` chooses on out-of-fold
validation scores and refits the winner on training and validation answers; :func:`calibrate_gate` is either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from reminder_lightning.reminder.calibration import CheckStates, candidate_name, fit_candidates, sample_scores
from reminder_lightning.reminder.detector import LayerSpec, SafetyProbe
from reminder_lightning.reminder.gate_report import require_val_tpr, roc_points, short_tpr_message
from reminder_lightning.reminder.probe_fitting import margin_threshold, roc_auc, threshold_for_fpr

ThresholdRule = Literal["at_fpr", "mid_gap"]


@dataclass
class GateChoice:
    """The chosen gate: the probe, its threshold and the validation evidence."""

    name: str
    probe: SafetyProbe
    threshold: float
    report: dict = field(default_factory=dict)


@dataclass
class _Scored:
    """A candidate's validation scores: per answer (its lowest check) and per check, for each class."""

    layer: LayerSpec
    components: int
    answer_harmful: torch.Tensor
    answer_benign: torch.Tensor
    check_harmful: torch.Tensor
    check_benign: torch.Tensor


def _score(probe: SafetyProbe, harmful: CheckStates, benign: CheckStates) -> _Scored:
    def checks(states: CheckStates) -> torch.Tensor:
        return probe(states.select(probe.layer_spec)).float() if len(states.sample) else torch.zeros(0)

    return _Scored(
        probe.layer_spec,
        probe.num_components,
        sample_scores(probe, harmful),
        sample_scores(probe, benign),
        checks(harmful),
        checks(benign),
    )


def select_gate(
    candidates: dict[str, SafetyProbe],
    harmful: CheckStates,
    benign: CheckStates,
    target_fpr: float = 0.01,
    threshold_rule: ThresholdRule = "mid_gap",
) -> GateChoice:
    """The candidate that flags most validation harmful answers at ``target_fpr`` (ties: higher per-check ROC AUC,
    then fewer PCA components); see the module docstring for the threshold rules."""
    _check_selection(candidates, harmful, benign, target_fpr, threshold_rule)
    scored = {name: _score(probe, harmful, benign) for name, probe in candidates.items()}
    best, report = _choose(scored, harmful, benign, target_fpr, threshold_rule)
    return GateChoice(best, candidates[best], report["threshold"], report)


def cross_fit_gate(
    train_harmful: CheckStates,
    train_benign: CheckStates,
    harmful: CheckStates,
    benign: CheckStates,
    layers: list[LayerSpec],
    components: list[int],
    given: dict[str, SafetyProbe] | None = None,
    target_fpr: float = 0.01,
    threshold_rule: ThresholdRule = "mid_gap",
    folds: int = 5,
    seed: int = 0,
) -> GateChoice:
    """Choose the gate on out-of-fold validation scores, then fit it on training *and* validation answers.

    The validation answers of each class are dealt into ``folds`` folds (a seeded shuffle). For each fold, every
    layer x PCA candidate is fitted on the training answers plus the other folds and scores the fold's answers, so
    every validation answer is scored by probes that never saw it. The candidate and its threshold are chosen on
    those scores exactly as :func:`select_gate` does; the exported probe is that candidate refitted on all
    training and validation answers (more answers of both classes than the training ones alone: the validation
    benign answers are usually the largest, most varied benign set at hand). ``given`` probes are fixed: they are
    scored on the validation answers as they are.
    """
    given = dict(given or {})
    if folds < 2:
        raise ValueError(f"cross-fitting needs folds >= 2, got {folds}")
    if folds > min(harmful.num_samples, benign.num_samples):
        raise ValueError(
            f"{folds} folds need at least {folds} validation answers of each class "
            f"(have {harmful.num_samples} harmful, {benign.num_samples} benign)."
        )
    shapes = {candidate_name(spec, m): (spec, m) for spec in layers for m in components}  # fit_candidates' names
    names = list(shapes)
    _check_selection({**shapes, **given}, harmful, benign, target_fpr, threshold_rule)
    generator = torch.Generator().manual_seed(seed)
    order = {
        side: torch.randperm(s.num_samples, generator=generator) for side, s in (("h", harmful), ("b", benign))
    }
    answer = {n: {"h": torch.ones(harmful.num_samples), "b": torch.ones(benign.num_samples)} for n in names}
    checks: dict[str, dict[str, list[torch.Tensor]]] = {n: {"h": [], "b": []} for n in names}
    for f in range(folds):
        held = {side: idx[f::folds] for side, idx in order.items()}
        rest = {side: torch.cat([idx[g::folds] for g in range(folds) if g != f]) for side, idx in order.items()}
        fold_candidates = fit_candidates(
            CheckStates.concat([train_harmful, harmful.subset(rest["h"])]),
            CheckStates.concat([train_benign, benign.subset(rest["b"])]),
            layers,
            components,
        )
        fold_h, fold_b = harmful.subset(held["h"]), benign.subset(held["b"])
        for name, probe in fold_candidates.items():
            scored = _score(probe, fold_h, fold_b)
            answer[name]["h"][held["h"]] = scored.answer_harmful
            answer[name]["b"][held["b"]] = scored.answer_benign
            checks[name]["h"].append(scored.check_harmful)
            checks[name]["b"].append(scored.check_benign)
    scored = {name: _score(probe, harmful, benign) for name, probe in given.items()}
    for name, (layer, m) in shapes.items():
        scored[name] = _Scored(
            layer,
            m,
            answer[name]["h"],
            answer[name]["b"],
            torch.cat(checks[name]["h"]),
            torch.cat(checks[name]["b"]),
        )
    best, report = _choose(scored, harmful, benign, target_fpr, threshold_rule)
    if best in given:
        probe = given[best]
    else:
        pooled_h = CheckStates.concat([train_harmful, harmful])
        pooled_b = CheckStates.concat([train_benign, benign])
        probe = fit_candidates(pooled_h, pooled_b, [shapes[best][0]], [shapes[best][1]])[best]
    report["cross_fit"] = {
        "folds": folds,
        "seed": seed,
        "scores": "out-of-fold: each validation answer scored by probes fitted without it",
        "exported_probe_fitted_on": {
            "harmful_answers": train_harmful.num_samples + harmful.num_samples,
            "benign_answers": train_benign.num_samples + benign.num_samples,
        },
    }
    return GateChoice(best, probe, report["threshold"], report)


def calibrate_gate(
    train_harmful: CheckStates,
    train_benign: CheckStates,
    harmful: CheckStates,
    benign: CheckStates,
    layers: list[LayerSpec],
    components: list[int],
    given: dict[str, SafetyProbe] | None = None,
    target_fpr: float = 0.01,
    threshold_rule: ThresholdRule = "mid_gap",
    cross_fit_folds: int = 0,
    seed: int = 0,
    min_val_tpr: float | None = None,
) -> GateChoice:
    """Fit and choose the gate: candidates fitted on the training answers and chosen on the validation answers
    (``cross_fit_folds`` 0), or :func:`cross_fit_gate` with that many folds; a chosen gate that flags fewer than
    ``min_val_tpr`` of the validation harmful answers raises (None: it is kept, with a warning in the report)."""
    if cross_fit_folds:
        choice = cross_fit_gate(
            train_harmful, train_benign, harmful, benign, layers, components, given, target_fpr, threshold_rule,
            cross_fit_folds, seed,
        )  # fmt: skip
    else:
        candidates = fit_candidates(train_harmful, train_benign, layers, components, given)
        choice = select_gate(candidates, harmful, benign, target_fpr, threshold_rule)
    require_val_tpr(choice.report, min_val_tpr)
    return choice


def _check_selection(candidates, harmful, benign, target_fpr, threshold_rule) -> None:
    if threshold_rule not in ("at_fpr", "mid_gap"):
        raise ValueError(f"threshold_rule must be 'at_fpr' or 'mid_gap', got {threshold_rule!r}")
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    if not candidates:
        raise ValueError("No gate candidates to choose from: give layers and components (or a probe).")
    if harmful.num_samples == 0 or benign.num_samples == 0:
        raise ValueError("Gate selection needs validation answers of both classes (harmful and benign).")


def _choose(
    scored: dict[str, _Scored],
    harmful: CheckStates,
    benign: CheckStates,
    target_fpr: float,
    threshold_rule: ThresholdRule,
) -> tuple[str, dict]:
    """Thresholds, validation rates and the winner from each candidate's scores; the report of the winner."""
    scores = {}
    for name, sc in scored.items():
        s_h, s_b = sc.answer_harmful, sc.answer_benign
        if not (torch.isfinite(s_h).all() and torch.isfinite(s_b).all()):
            raise ValueError(f"Gate candidate {name} gives non-finite P(safe) on validation answers.")
        if threshold_rule == "mid_gap":
            threshold = margin_threshold(s_h, s_b, target_fpr)
        else:
            threshold = threshold_for_fpr(s_b, target_fpr)
        p_h, p_b = sc.check_harmful, sc.check_benign
        scores[name] = {
            "threshold": threshold,
            "layer": sc.layer,
            "components": sc.components,
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
        "roc": roc_points(scored[best].answer_harmful, scored[best].answer_benign),
        "candidates": scores,
    }
    report["warnings"] = []
    if target_fpr > 0 and target_fpr * benign.num_samples < 1:
        report["warnings"].append(
            f"target_fpr {target_fpr} is below the resolution of {benign.num_samples} validation benign answers "
            f"(1/{benign.num_samples} = {1 / benign.num_samples:.4f}): the threshold flags none of them."
        )
    passed = round((1.0 - report["val_tpr"]) * harmful.num_samples)
    if passed:
        report["warnings"].append(short_tpr_message(report, harmful.num_samples))
    return best, report


def _auc(harmful: torch.Tensor, benign: torch.Tensor) -> float:
    """ROC AUC of P(safe) for telling benign (positive) from harmful."""
    return roc_auc(torch.cat([benign, harmful]), torch.cat([torch.ones(len(benign)), torch.zeros(len(harmful))]))


def _nan_low(value: float) -> float:
    return float("-inf") if value != value else value
