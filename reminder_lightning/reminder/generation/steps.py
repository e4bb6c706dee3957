"""The pure steps the generation loop is made of: no state of their own, tensors in, tensors out.

A *check* appends the reminder's placeholder ids for every sample to the existing KV cache (attention 1 only for
the samples being checked), reads the probe at the last reminder position, and the gate decides per sample.
Kept reminders stay in the cache; unkept ones are masked out (attention 0, positions do not advance), so the
sample continues exactly as if no check had happened. Nothing is recomputed.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.schedule import GateMode, ReminderSchedule
from reminder_lightning.vlm.adapter import VLMAdapter
from reminder_lightning.vlm.collate import collate_encodings


def forward_kwargs(model) -> tuple[str, dict[str, Any]]:
    """The cache argument's name (``cache`` in newer transformers, ``past_key_values`` before) and, where the model
    accepts it, ``logits_to_keep=1``: only the last position's logits are ever used, and the LM head over a whole
    prompt (or all reminder positions) costs as much as several decoding steps."""
    params = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    return ("cache" if "cache" in params else "past_key_values"), extra


def get_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def encode_batch(adapter: VLMAdapter, images: list | None, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Left-padded model inputs for (image or None, prompt) pairs, on the adapter's device."""
    if images is not None and len(images) != len(prompts):
        raise ValueError(f"Got {len(images)} images for {len(prompts)} prompts; pass None for text-only samples.")
    builder = adapter.inputs
    items = [builder.encode_prompt(p, None if images is None else images[i]) for i, p in enumerate(prompts)]
    keys: list[str] = []
    for item in items:
        keys += [k for k in builder.token_keys(item) if k not in keys]
    batch = collate_encodings(items, keys, builder.pad_values(), padding_side="left")
    return {k: v.to(adapter.device) for k, v in batch.items()}


def eos_ids(adapter: VLMAdapter) -> list[int]:
    """End-of-answer ids of the family plus the checkpoint's (or tokenizer's) EOS."""
    ids = list(adapter.inputs.end_of_answer_ids())
    eos = getattr(getattr(adapter.model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = adapter.tokenizer.eos_token_id
    if eos is not None:
        ids += [int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])]
    return ids


def pick_tokens(scores: torch.Tensor, do_sample: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Next token ``(B,)`` from processed scores ``(B, V)``: argmax, or a draw from their softmax."""
    if do_sample:
        return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator).squeeze(1)
    return scores.argmax(-1)


def run_check(
    model,
    family,
    cache,
    cache_key: str,
    attention: torch.Tensor,
    checking: torch.Tensor,
    placeholders: torch.Tensor,
    pos_state: Any,
    probe: SafetyProbe | None,
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """One forward over the reminder positions on top of the cache.

    Args:
        attention: ``(B, L)`` attention mask so far.
        checking: ``(B,)`` bool, the samples whose reminder is tried (the others see attention 0 there).
        placeholders: ``(n,)`` reminder placeholder ids.

    Returns:
        The next-token logits after the reminder ``(B, V)`` (fp32), P(safe) at the last reminder position ``(B,)``
        on the CPU (NaN without a probe), and the cache (which now holds the ``n`` reminder slots).
    """
    batch, n_rem = attention.shape[0], placeholders.numel()
    trial = torch.cat([attention, checking.to(attention.device).long()[:, None].expand(-1, n_rem)], dim=1)
    out = model(
        **forward_kwargs(model)[1],
        input_ids=placeholders.unsqueeze(0).expand(batch, -1),
        attention_mask=trial,
        position_ids=family.decode_positions(trial, n_rem, pos_state),
        use_cache=True,
        output_hidden_states=probe is not None,
        **{cache_key: cache},
    )
    if probe is not None:
        p_safe = probe(probe.select(out.hidden_states)[:, -1]).float().cpu()
    else:
        p_safe = torch.full((batch,), float("nan"))
    return out.logits[:, -1].float(), p_safe, get_cache(out)


def gate(checking: torch.Tensor, p_safe: torch.Tensor, schedule: ReminderSchedule) -> torch.Tensor:
    """Which checked samples keep the reminder ``(B,)``: all of them (``always``) or those with
    P(safe) < threshold (``gated``; the threshold moved up by the schedule's ``fallback_margin``). Fails closed: a
    gated check without a finite P(safe) is an error, never a silent "safe"."""
    if schedule.mode is GateMode.always:
        return checking.clone()
    scored = p_safe[checking]
    if not bool(torch.isfinite(scored).all()):
        raise RuntimeError(
            "The gate got a non-finite P(safe) "
            f"({scored[~torch.isfinite(scored)].tolist()}) at a check: the probe or soft prompt holds NaN/inf, "
            "or the model's hidden states overflowed. Refusing to decide; check the artifact (refit the probe) or "
            "run the model in a wider dtype."
        )
    return checking & (p_safe < schedule.keep_below)


def keep_reminder(attention: torch.Tensor, keep: torch.Tensor, n_rem: int) -> torch.Tensor:
    """The attention mask after a check: the ``n_rem`` reminder slots count (1) only for kept samples."""
    return torch.cat([attention, keep.to(attention.device).long()[:, None].expand(-1, n_rem)], dim=1)
