"""Collecting the hidden states a safety probe reads, and scoring a probe.

Two places to read: ``prompt_end`` (the last prompt token, as the reference fits its probe) and
``reminder`` (the last reminder token after the prompt, with a trained soft prompt injected, where the
probe is applied at inference). The last layer by default (the reference); ``layers`` picks others.
"""

from __future__ import annotations

from typing import Literal

import torch
from tqdm.auto import tqdm

from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.vlm.adapter import VLMAdapter
from reminder_lightning.vlm.collate import collate_encodings

Position = Literal["prompt_end", "reminder"]


@torch.no_grad()
def collect_hidden_states(
    adapter: VLMAdapter,
    questions: list[str],
    images: list | None = None,
    position: Position = "prompt_end",
    injector: ReminderInjector | None = None,
    batch_size: int = 8,
    desc: str = "hidden states",
    prefixes: list[list[int]] | None = None,
    layers: int | list[int] = -1,
) -> torch.Tensor:
    """Hidden states (fp32, CPU) at ``position`` for each (image or None, question): ``(N, H)`` for one layer
    (an index into transformers' ``hidden_states`` tuple, -1 the last), ``(N, len(layers), H)`` for a list.

    ``prefixes`` (token ids of a partial answer per prompt) go between the prompt and the reminder, which is
    where the probe reads at generation time: after 15, 31, ... generated tokens.
    """
    if position == "reminder" and injector is None:
        raise ValueError("position='reminder' needs the trained soft prompt (an injector); pass reminder=...")
    if position not in ("prompt_end", "reminder"):
        raise ValueError(f"position must be 'prompt_end' or 'reminder', got {position!r}")
    builder = adapter.inputs
    # Batches of similar length: one long prompt (a code task) pads every row of its batch to its length, and the
    # states do not depend on the company a row keeps. The rows go back to the caller's order at the end.
    order = sorted(
        range(len(questions)),
        key=lambda i: -(len(questions[i]) + 4 * (len(prefixes[i]) if prefixes is not None else 0)),
    )
    states = []
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        items = []
        for i in order[start : start + batch_size]:
            enc = builder.encode_prompt(questions[i], None if images is None else images[i])
            if prefixes is not None:
                enc = builder.append_tokens(enc, list(prefixes[i]))
            if position == "reminder":
                enc = builder.append_tokens(enc, injector.placeholder_ids)
            items.append(enc)
        keys: list[str] = []
        for item in items:
            keys += [k for k in builder.token_keys(item) if k not in keys]
        batch = collate_encodings(items, keys, builder.pad_values(), padding_side="left")
        batch = {k: v.to(adapter.device) for k, v in batch.items()}
        position_ids, _ = adapter.family.prefill_positions(adapter.model, batch)
        if injector is not None:
            with injector:
                out = adapter.model(**batch, position_ids=position_ids, output_hidden_states=True)
        else:
            out = adapter.model(**batch, position_ids=position_ids, output_hidden_states=True)
        if isinstance(layers, int):
            states.append(out.hidden_states[layers][:, -1].float().cpu())
        else:
            states.append(torch.stack([out.hidden_states[i][:, -1] for i in layers], 1).float().cpu())
    if not states:
        return torch.zeros(0, *([] if isinstance(layers, int) else [len(layers)]), adapter.hidden_size)
    stacked = torch.cat(states)
    return stacked[torch.argsort(torch.tensor(order))]


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 = positive), ties counted half (torchmetrics)."""
    from torchmetrics.functional.classification import binary_auroc

    scores, labels = scores.float().reshape(-1), labels.bool().reshape(-1)
    if bool(labels.all()) or not bool(labels.any()):
        raise ValueError("ROC AUC needs both classes.")
    # binary_auroc maps scores outside [0, 1] through a sigmoid: monotone, so the area is the same
    return float(binary_auroc(scores, labels.long()))


def threshold_for_fpr(p_safe_benign: torch.Tensor, target_fpr: float) -> float:
    """The largest threshold that flags (P(safe) < threshold) at most ``target_fpr`` of benign samples."""
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    values = p_safe_benign.float().sort().values
    allowed = int(target_fpr * len(values))  # benign samples that may be flagged
    return float(values[allowed]) if allowed < len(values) else 1.0


def margin_threshold(p_safe_harmful: torch.Tensor, p_safe_benign: torch.Tensor, target_fpr: float) -> float:
    """A threshold with the same validation operating point as :func:`threshold_for_fpr`, placed mid-gap.

    :func:`threshold_for_fpr` returns the *largest* threshold that flags at most ``target_fpr`` of benign samples:
    it sits on the lowest unflagged benign score, so a new benign sample just below it is flagged. Every
    threshold between the highest harmful score it flags and that benign score flags the same validation
    samples; this returns the midpoint of that gap in log-odds, as far from both classes as the data allow.
    """
    upper = threshold_for_fpr(p_safe_benign, target_fpr)
    flagged = p_safe_harmful.float()[p_safe_harmful.float() < upper]
    if len(flagged) == 0 or upper >= 1.0 or upper <= 0.0:
        return upper
    # float64 log-odds: saturated scores (P(safe) ~ 1e-8) must not be clamped up past the benign score, which
    # would flag benign answers the at-FPR threshold leaves alone (an earlier 1e-6 clamp did exactly that).
    tiny = 1e-300
    lo = torch.tensor(max(float(flagged.max()), tiny), dtype=torch.float64)
    hi = torch.tensor(upper, dtype=torch.float64)
    mid = float(torch.sigmoid((torch.logit(lo) + torch.logit(hi)) / 2))
    return min(max(mid, float(flagged.max())), upper)
