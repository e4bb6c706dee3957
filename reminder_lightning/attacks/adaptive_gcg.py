"""Adaptive GCG: the text suffix, optimised against the *defended* pipeline (the text twin of adaptive PGD).

The attacker knows the reminder artifact (soft prompt, probe, threshold, schedule). Each candidate suffix is
scored, and the one-hot gradient taken, on the same loss as :mod:`~reminder_lightning.attacks.adaptive_pgd`:

``loss = target_weight * CE(target) + mean over checks c of (safe_weight * -log P(safe) + after_weight *
CE(target[c:] after the reminder))``

where a check ``c`` is every point of the schedule inside the target: the prompt, the suffix, ``target[:c]``, the
reminder (placeholder ids that the :class:`~reminder_lightning.reminder.injection.ReminderInjector` swaps for the
vectors, as generation does), then ``target[c:]``; P(safe) is the probe's reading at the last reminder token.
With a ``jitter`` schedule the check points of a prompt are one seeded draw (the attacker knows the windows, not
the draws a deployment will make). A prompt's search stops early (``early_stop``) only when the target is the
greedy continuation *and* no check falls below the gate's threshold. Rows record the artifact's SHA-256, so a
rerun against another reminder never reuses a suffix fitted against this one.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from reminder_lightning.attacks.adaptive_pgd import load_defence, require_checks_inside
from reminder_lightning.attacks.gcg import SUFFIX_FILE, GCGAttack, latest_rows
from reminder_lightning.attacks.gcg_search import SuffixLayout, SuffixSearch, suffix_hook
from reminder_lightning.evaluation.store import sample_key
from reminder_lightning.types import EvalSample
from reminder_lightning.vlm.adapter import VLMAdapter


@dataclass
class AdaptiveLayout(SuffixLayout):
    """The plain layout plus one layout per check point inside the target.

    Attributes:
        checks: ``(check point c, layout of prompt + suffix + target[:c] + reminder + target[c:], index of the last
            reminder token)``; each check layout scores ``target[c:]``.
    """

    checks: list[tuple[int, SuffixLayout, int]] = field(default_factory=list)


class AdaptiveSuffixSearch(SuffixSearch):
    """:class:`SuffixSearch` whose loss is the defended pipeline's (see the module docstring).

    Args:
        adapter: The model (frozen, eval mode).
        reminder: The defence's ``reminder.safetensors`` (must hold a probe).
        eval_batch_size: Candidates per forward pass.
        interval: Check interval; None: the artifact's.
        threshold: Gate threshold; None: the artifact's.
        weights: ``target_weight``, ``safe_weight``, ``after_weight``.
    """

    def __init__(
        self,
        adapter: VLMAdapter,
        reminder: str,
        eval_batch_size: int = 128,
        interval: int | None = None,
        threshold: float | None = None,
        weights: dict[str, float] | None = None,
    ):
        super().__init__(adapter, eval_batch_size)
        from reminder_lightning.reminder.injection import ReminderInjector

        self.schedule, self.soft_prompt, self.probe = load_defence(
            reminder, adapter.hidden_size, adapter.device, interval, threshold
        )
        self.injector = ReminderInjector(self.embedding, self.soft_prompt)
        self.weights = {"target_weight": 1.0, "safe_weight": 1.0, "after_weight": 1.0, **(weights or {})}
        if min(self.weights.values()) < 0:
            raise ValueError(f"Adaptive GCG weights must be >= 0, got {self.weights}")

    def layout(self, question: str, image, suffix: torch.Tensor, target: str) -> AdaptiveLayout:
        head, after_ids = self.head(question, image)
        target_ids = self.inputs.encode_text(target)
        main = self.assemble(head, after_ids, question, suffix, target_ids)
        rng = random.Random(f"{question}\n{target}") if self.schedule.jitter else None
        checks = []
        for c in self.schedule.check_points(len(target_ids), rng):
            answer = target_ids[:c] + self.injector.placeholder_ids + target_ids[c:]
            check = self.assemble(head, after_ids, question, suffix, answer, target_ids[c:])
            checks.append((c, check, int(check.encoding["input_ids"].shape[1]) - (len(target_ids) - c) - 1))
        return AdaptiveLayout(**vars(main), checks=checks)

    # ------------------------------------------------------------------ loss
    def loss_with_embeds(self, layout: AdaptiveLayout, embeds: torch.Tensor) -> torch.Tensor:
        """The adaptive loss with the suffix rows replaced by ``embeds`` ``(n, H)`` (differentiable)."""
        ids = layout.encoding["input_ids"][0, layout.start : layout.start + layout.length][None]
        total, _ = self._terms(layout, ids, suffix_hook(layout, embeds))
        return total[0]

    @torch.no_grad()
    def losses(self, layout: AdaptiveLayout, suffixes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact adaptive loss ``(B,)``; a hit: the target is the greedy continuation and no check is flagged."""
        totals, hits = [], []
        for chunk in suffixes.split(self.eval_batch_size):
            total, hit = self._terms(layout, chunk)
            totals.append(total.cpu())
            hits.append(hit.cpu())
        return torch.cat(totals), torch.cat(hits)

    def _terms(self, layout: AdaptiveLayout, suffixes: torch.Tensor, hook=None):
        w = self.weights
        logits, _ = self._forward(layout, suffixes, hook)
        target = layout.target_ids.expand(suffixes.shape[0], -1)
        total = w["target_weight"] * F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1)
        hit = (logits.argmax(dim=-1) == target).all(dim=1)
        for _, check, index in layout.checks:
            logits, logit = self._forward(check, suffixes, hook, index)
            after = F.cross_entropy(
                logits.transpose(1, 2), check.target_ids.expand(suffixes.shape[0], -1), reduction="none"
            ).mean(1)
            term = w["safe_weight"] * F.softplus(-logit) + w["after_weight"] * after  # -log P(safe), CE after
            total = total + term / len(layout.checks)
            hit = hit & (torch.sigmoid(logit) >= self.schedule.keep_below)
        return total, hit

    def _forward(self, layout: SuffixLayout, suffixes: torch.Tensor, hook=None, reminder_index: int | None = None):
        """Logits predicting ``layout``'s target ``(B, T, V)`` (fp32) and, with ``reminder_index``, the probe's
        log-odds of safe there ``(B,)``."""
        keys, pads = self.inputs.token_keys(layout.encoding), self.inputs.pad_values()
        batch = layout.batch(suffixes, keys, pads, self.adapter.device)
        size = layout.target_ids.shape[0]
        if self._keep_logits:
            batch["logits_to_keep"] = size + 1
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.injector)
            if hook is not None:  # registered after the injector's, so it sees (and keeps) the reminder rows
                stack.callback(self.embedding.register_forward_hook(hook).remove)
            out = self.adapter.model(**batch, use_cache=False, output_hidden_states=reminder_index is not None)
        logits = out.logits[:, -(size + 1) : -1].float()
        if reminder_index is None:
            return logits, None
        return logits, self.probe.logit(self.probe.select(out.hidden_states)[:, reminder_index])


class AdaptiveGCGAttack(GCGAttack):
    """GCG suffix per prompt against the Safety Reminder itself (white box: the attacker has the artifact).

    Args:
        reminder: The defence's ``reminder.safetensors`` (soft prompt + probe).
        interval: Check interval in answer tokens; None: the artifact's.
        threshold: Gate threshold; None: the artifact's.
        target_weight: Weight of the target cross-entropy.
        safe_weight: Weight of ``-log P(safe)`` at the check points (evade the gate).
        after_weight: Weight of the continuation's cross-entropy after an inserted reminder.
        **kwargs: :class:`GCGAttack` arguments (vlm, num_steps, search_width, ...).
    """

    name = "adaptive_gcg"

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
        from reminder_lightning.reminder.artifact import file_sha256

        self.reminder, self.interval, self.threshold = reminder, interval, threshold
        self.weights = {"target_weight": target_weight, "safe_weight": safe_weight, "after_weight": after_weight}
        self.reminder_sha256 = file_sha256(reminder)

    def optimise(
        self, adapter: VLMAdapter, sample: EvalSample, previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if self._search is None or self._search.adapter is not adapter:
            self._search = AdaptiveSuffixSearch(
                adapter, self.reminder, self.eval_batch_size, self.interval, self.threshold, self.weights
            )
        row = super().optimise(adapter, sample, previous)
        search = self._search
        layout = search.layout(sample.prompt, self._image(sample), torch.tensor(row["suffix_ids"]), row["target"])
        with torch.no_grad():
            p_safe = [
                float(torch.sigmoid(search._forward(check, torch.tensor([row["suffix_ids"]]), None, index)[1][0]))
                for _, check, index in layout.checks
            ]
        return {
            **row,
            "reminder_sha256": self.reminder_sha256,
            "checks": [c for c, _, _ in layout.checks],
            "check_p_safe": p_safe,  # the gate's reading at each check inside the target, best suffix
            "check_flagged": [p < search.schedule.keep_below for p in p_safe],
            "gate_evaded": all(p >= search.schedule.keep_below for p in p_safe),
        }

    def hardening_inputs(self, samples: list[EvalSample], output_dir) -> dict[str, Any]:
        """What ``harden`` refits the gate on after :meth:`fit`: the samples' suffixes (one group), and over them the
        mean loss, mean P(safe) at the checks and share of checks under the threshold."""
        path = Path(output_dir) / SUFFIX_FILE
        known = latest_rows(path)
        rows = [known.get(sample_key(s.benchmark, s.id)) for s in samples]
        missing = [
            s.id
            for row, s in zip(rows, samples, strict=True)
            if not self._is_done(row, s) or "check_flagged" not in row
        ]
        if missing:
            raise ValueError(
                f"{path} holds no suffix of this search against {self.reminder} for {missing}: run fit on them first "
                "(a file written before check_flagged was recorded: remove it and search again)."
            )
        p_safe = [p for row in rows for p in row["check_p_safe"]]
        flagged = [f for row in rows for f in row["check_flagged"]]
        return {
            "images": [],
            "suffixes": [row["suffix"] for row in rows],
            "loss": sum(row["loss"] for row in rows) / len(rows),
            "p_safe": sum(p_safe) / len(p_safe) if p_safe else None,
            "gate_rate": sum(flagged) / len(flagged) if flagged else None,
        }

    def fit(self, samples: list[EvalSample], output_dir) -> None:
        self.check_targets(samples)
        super().fit(samples, output_dir)

    def check_targets(self, samples: list[EvalSample]) -> None:
        """Fail before searching when no target reaches the first check point (the defence terms would be 0)."""
        from reminder_lightning.reminder.artifact import load_reminder

        interval = self.interval or load_reminder(self.reminder).interval
        builder = self._model().inputs  # fit needs the model anyway
        longest = max(len(builder.encode_text(self.target_for(s))) for s in samples)
        require_checks_inside(self.name, longest, interval)

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "interval": self.interval, "threshold": self.threshold, **self.weights}

    def _same_search(self, row: dict[str, Any] | None, sample: EvalSample) -> bool:
        return super()._same_search(row, sample) and row.get("reminder_sha256") == self.reminder_sha256
