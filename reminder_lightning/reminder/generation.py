"""Gated periodic injection over the KV cache: the Safety Reminder at inference.

Every ``interval`` generated tokens (after 15, 31, 47, ... with the default 16) the reminder vectors are
appended to the *existing* KV cache of every sample still being checked; the probe reads the last-layer
hidden state at the last reminder token and gives P(safe).

* ``P(safe) < threshold`` (``mode="gated"``) or ``mode="always"``: the sample is flagged; the reminder stays
  in its context and it continues from the logits after the reminder, in place.
* otherwise the reminder's cache slots are masked out for that sample (attention mask 0, positions do not
  advance) and it continues from the logits it had before the check, exactly as if no check happened.

Nothing is recomputed: a check costs one forward over ``num_tokens`` positions. Only public APIs are used:
the model's ``forward`` with a cache, attention masks and position ids, transformers' logits processors.
Positions come from the family (:meth:`VLMFamily.prefill_positions` / ``decode_positions``), so Qwen2-VL's
3-D rotary positions are right after the image.

Caveat: on models with sliding-window attention (Gemma 3's local layers), masked reminder slots still take
window room, so outputs can differ from an unchecked run once a sequence exceeds the window.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.soft_prompt import SoftPrompt
from reminder_lightning.vlm.adapter import VLMAdapter, collate_encodings


@dataclass
class ReminderGenerationConfig:
    """Decoding and gating settings.

    Args:
        max_new_tokens: Tokens to generate at most (reminder tokens do not count).
        min_new_tokens: EOS is suppressed until this many tokens are generated (benchmarks use it).
        do_sample: Sample (True) or greedy (False).
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass (1.0 = off).
        top_k: Top-k sampling (0 = off).
        repetition_penalty: transformers' repetition penalty (1.0 = off).
        interval: Check every ``interval`` generated tokens (after interval-1, 2*interval-1, ...).
        threshold: Flag when P(safe) < threshold.
        mode: ``gated`` (probe decides), ``always`` (every check keeps the reminder), ``never`` (no checks).
        keep_checking_after_flag: Keep checking (and possibly keep more reminders) after a flag.
        return_text: ``full`` (everything the user would see) or ``after_reminder`` (the text after the
            kept reminder for flagged samples, as the reference code returns).
        seed: Seed of the sampling generator (None: torch's global RNG).
        output_scores: Keep the processed next-token scores of every step in the outputs.
    """

    max_new_tokens: int = 256
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    interval: int = 16
    threshold: float = 0.2
    mode: Literal["gated", "always", "never"] = "gated"
    keep_checking_after_flag: bool = False
    return_text: Literal["full", "after_reminder"] = "full"
    seed: int | None = None
    output_scores: bool = False

    def __post_init__(self):
        if self.mode not in ("gated", "always", "never"):
            raise ValueError(f"mode must be 'gated', 'always' or 'never', got {self.mode!r}")
        if self.return_text not in ("full", "after_reminder"):
            raise ValueError(f"return_text must be 'full' or 'after_reminder', got {self.return_text!r}")
        if self.interval < 1 or self.max_new_tokens < 1:
            raise ValueError("interval and max_new_tokens must be >= 1")

    def is_check_step(self, generated: int) -> bool:
        """Whether a check follows the ``generated``-th token (1-based count)."""
        return self.mode != "never" and (generated + 1) % self.interval == 0

    def logits_processors(self):
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        procs = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.do_sample:
            if self.temperature != 1.0:
                procs.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k > 0:
                procs.append(TopKLogitsWarper(self.top_k))
            if self.top_p < 1.0:
                procs.append(TopPLogitsWarper(self.top_p))
        return procs


@dataclass
class ReminderOutput:
    """One sample's result and trace.

    Attributes:
        text: What is returned (see ``return_text``).
        token_ids: Generated token ids (reminder vectors are not tokens and are not included).
        flagged: Whether a reminder was kept.
        flag_step: Tokens generated when the first reminder was kept (None if never).
        checks: ``(tokens generated, P(safe))`` for every check (P(safe) is NaN without a probe).
        text_before: Text generated before the first kept reminder (all text if not flagged).
        text_after: Text generated after it ("" if not flagged).
        finish_reason: ``eos`` or ``length``.
        scores: Processed next-token scores ``(vocab,)`` per generated token, with ``output_scores``.
    """

    text: str
    token_ids: list[int]
    flagged: bool = False
    flag_step: int | None = None
    checks: list[tuple[int, float]] = field(default_factory=list)
    text_before: str = ""
    text_after: str = ""
    finish_reason: str = "length"
    scores: list[torch.Tensor] | None = None


@dataclass
class StepEvent:
    """Emitted by :meth:`ReminderGenerator.stream` after every generated token of every live sample."""

    sample: int
    token_id: int
    text: str  # newly decodable text (may be "" while a multi-byte character is incomplete)
    flagged_now: bool = False


def _forward_kwargs(model) -> tuple[str, dict[str, Any]]:
    """The cache argument's name (``cache`` in transformers >= 5.x, ``past_key_values`` before) and, where the
    model accepts it, ``logits_to_keep=1``: only the last position's logits are ever used, and computing the
    LM head over a whole prompt (or all reminder positions) costs as much as several decoding steps."""
    params = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    return ("cache" if "cache" in params else "past_key_values"), extra


class ReminderGenerator:
    """Batched generation with the Safety Reminder, usable without Lightning.

    Args:
        adapter: The VLM (see :meth:`VLMAdapter.wrap` for a plain model + processor).
        soft_prompt: The reminder vectors; None for undefended generation through the same loop.
        probe: The safety probe; required for ``mode="gated"``.
        config: Default decoding and gating settings.
    """

    def __init__(
        self,
        adapter: VLMAdapter,
        soft_prompt: SoftPrompt | None,
        probe: SafetyProbe | None = None,
        config: ReminderGenerationConfig | None = None,
    ):
        if soft_prompt is None:  # an undefended generator: the same loop, no checks
            soft_prompt = SoftPrompt(1, adapter.hidden_size)
            config = ReminderGenerationConfig(
                **{**(config or ReminderGenerationConfig()).__dict__, "mode": "never"}
            )
            self.undefended = True
        else:
            self.undefended = False
        if soft_prompt.hidden_size != adapter.hidden_size:
            raise ValueError(
                f"The reminder has width {soft_prompt.hidden_size} but the model's hidden size is "
                f"{adapter.hidden_size}: it was trained for another model."
            )
        self.adapter = adapter
        self.soft_prompt = soft_prompt.to(adapter.device)
        self.probe = probe.to(adapter.device) if probe is not None else None
        self.config = config or ReminderGenerationConfig()
        self.injector = ReminderInjector(adapter.input_embeddings(), self.soft_prompt)

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def generate(self, images: list | None, prompts: list[str], **overrides: Any) -> list[ReminderOutput]:
        """Generate for a batch of (image or None, prompt); ``overrides`` replace config fields."""
        cfg = self._config(overrides)
        n = len(prompts)
        tokens: list[list[int]] = [[] for _ in range(n)]
        state = None
        for event in self._run(images, prompts, cfg):
            if isinstance(event, _RunState):
                state = event
                continue
            tokens[event.sample].append(event.token_id)
        return [self._output(i, tokens[i], state, cfg) for i in range(n)]

    @torch.no_grad()
    def stream(self, images: list | None, prompts: list[str], **overrides: Any) -> Iterator[StepEvent]:
        """Yield :class:`StepEvent` text increments as tokens are generated."""
        cfg = self._config(overrides)
        decoded: dict[int, list[int]] = {}
        shown: dict[int, str] = {}
        for event in self._run(images, prompts, cfg):
            if isinstance(event, _RunState):
                continue
            ids = decoded.setdefault(event.sample, [])
            ids.append(event.token_id)
            text = self.adapter.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the rest
                new = ""
            else:
                new = text[len(shown.get(event.sample, "")) :]
                shown[event.sample] = text
            yield StepEvent(event.sample, event.token_id, new, event.flagged_now)

    # ------------------------------------------------------------------ internals
    def _config(self, overrides: dict[str, Any]) -> ReminderGenerationConfig:
        values = {**self.config.__dict__, **overrides}
        cfg = ReminderGenerationConfig(**values)
        if self.undefended and cfg.mode != "never":
            raise ValueError("This generator has no reminder (soft_prompt=None): only mode='never' is possible.")
        if cfg.mode == "gated" and self.probe is None:
            raise ValueError(
                "mode='gated' needs a probe; pass one (or a reminder artifact with a probe), or use "
                "mode='always' / 'never'."
            )
        return cfg

    def _encode(self, images: list | None, prompts: list[str]) -> dict[str, torch.Tensor]:
        if images is not None and len(images) != len(prompts):
            raise ValueError(
                f"Got {len(images)} images for {len(prompts)} prompts; pass None for text-only samples."
            )
        builder = self.adapter.inputs
        items = [builder.encode_prompt(p, None if images is None else images[i]) for i, p in enumerate(prompts)]
        keys: list[str] = []
        for item in items:
            keys += [k for k in builder.token_keys(item) if k not in keys]
        batch = collate_encodings(items, keys, builder.pad_values(), padding_side="left")
        return {k: v.to(self.adapter.device) for k, v in batch.items()}

    def _run(self, images, prompts, cfg: ReminderGenerationConfig):
        """Core loop; yields ``_Token`` events and, last, the ``_RunState``."""
        model, family = self.adapter.model, self.adapter.family
        inputs = self._encode(images, prompts)
        batch, device = inputs["input_ids"].shape[0], inputs["input_ids"].device
        cache_key, last_only = _forward_kwargs(model)
        attention = inputs["attention_mask"].clone()
        history = inputs["input_ids"].clone()  # real tokens only, for logits processors
        position_ids, pos_state = family.prefill_positions(model, inputs)
        processors = cfg.logits_processors()
        generator = None
        if cfg.do_sample and cfg.seed is not None:
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
        eos = torch.tensor(self.adapter.inputs.end_of_answer_ids() + self._eos_ids(), device=device).unique()
        eos_cpu = eos.cpu()
        placeholders = torch.tensor(self.injector.placeholder_ids, device=device)
        if cfg.min_new_tokens > 0:
            from transformers import MinNewTokensLengthLogitsProcessor

            processors.insert(0, MinNewTokensLengthLogitsProcessor(history.shape[1], cfg.min_new_tokens, eos))

        run = _RunState(batch, cfg.output_scores)
        run.model, run.family, run.cache_key, run.pos_state, run.placeholders = (
            model,
            family,
            cache_key,
            pos_state,
            placeholders,
        )
        with self.injector:
            out = model(**inputs, position_ids=position_ids, use_cache=True, **last_only)
            cache = _get_cache(out)
            next_logits = out.logits[:, -1].float()
            for step in range(cfg.max_new_tokens):
                scores = processors(history, next_logits)
                if cfg.do_sample:
                    probs = torch.softmax(scores, dim=-1)
                    token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                else:
                    token = scores.argmax(-1)
                token = torch.where(
                    run.finished.to(device), torch.full_like(token, self.adapter.inputs.pad_token_id), token
                )
                generated = step + 1
                token_ids = token.tolist()  # one device sync per step
                finished = run.finished.tolist()
                for i in range(batch):
                    if not finished[i]:
                        if run.scores is not None:
                            run.scores[i].append(scores[i].cpu())
                        yield _Token(i, token_ids[i], run.flag_step[i] == generated - 1)
                newly_done = torch.isin(torch.tensor(token_ids), eos_cpu) & ~run.finished
                run.reason_eos |= newly_done
                run.finished |= newly_done
                history = torch.cat([history, token[:, None]], dim=1)
                if bool(run.finished.all()) or generated == cfg.max_new_tokens:
                    break
                attention = torch.cat([attention, attention.new_ones(batch, 1)], dim=1)
                out = model(
                    input_ids=token[:, None],
                    attention_mask=attention,
                    position_ids=family.decode_positions(attention, 1, pos_state),
                    use_cache=True,
                    **{cache_key: cache},
                )
                cache = _get_cache(out)
                next_logits = out.logits[:, -1].float()
                if cfg.is_check_step(generated):
                    checking = ~run.finished & (~run.flagged | cfg.keep_checking_after_flag)
                    if bool(checking.any()):
                        next_logits, attention, cache = self._check(
                            run, cfg, cache, attention, checking, next_logits, generated
                        )
        yield run

    def _check(self, run, cfg, cache, attention, checking, next_logits, generated):
        model, family, cache_key, pos_state, placeholders = (
            run.model,
            run.family,
            run.cache_key,
            run.pos_state,
            run.placeholders,
        )
        batch, n_rem = attention.shape[0], placeholders.numel()
        device = attention.device
        ids = placeholders.unsqueeze(0).expand(batch, -1)
        trial = torch.cat([attention, checking.to(device).long()[:, None].expand(-1, n_rem)], dim=1)
        out = model(
            **_forward_kwargs(model)[1],
            input_ids=ids,
            attention_mask=trial,
            position_ids=family.decode_positions(trial, n_rem, pos_state),
            use_cache=True,
            output_hidden_states=True,
            **{cache_key: cache},
        )
        if self.probe is not None:
            p_safe = self.probe(self.probe.select(out.hidden_states)[:, -1]).float().cpu()
        else:
            p_safe = torch.full((batch,), float("nan"))
        keep = checking.clone() if cfg.mode == "always" else checking & (p_safe < cfg.threshold)
        for i in range(batch):
            if checking[i]:
                run.checks[i].append((generated, float(p_safe[i])))
            if keep[i] and not run.flagged[i]:
                run.flagged[i] = True
                run.flag_step[i] = generated
        keep_dev = keep.to(device)
        attention = torch.cat([attention, keep_dev.long()[:, None].expand(-1, n_rem)], dim=1)
        logits = torch.where(keep_dev[:, None], out.logits[:, -1].float(), next_logits)
        return logits, attention, _get_cache(out)

    def _eos_ids(self) -> list[int]:
        eos = getattr(getattr(self.adapter.model, "generation_config", None), "eos_token_id", None)
        if eos is None:
            eos = self.adapter.tokenizer.eos_token_id
        if eos is None:
            return []
        return [int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])]

    def _output(self, i: int, tokens: list[int], run: _RunState, cfg) -> ReminderOutput:
        tok = self.adapter.tokenizer
        step = run.flag_step[i]
        before = tokens if step is None else tokens[:step]
        after = [] if step is None else tokens[step:]
        text_before = tok.decode(before, skip_special_tokens=True)
        text_after = tok.decode(after, skip_special_tokens=True)
        if cfg.return_text == "after_reminder" and step is not None:
            text = text_after
        else:
            text = tok.decode(tokens, skip_special_tokens=True)
        return ReminderOutput(
            text=text,
            token_ids=tokens,
            flagged=bool(run.flagged[i]),
            flag_step=step,
            checks=run.checks[i],
            text_before=text_before,
            text_after=text_after,
            finish_reason="eos" if run.reason_eos[i] else "length",
            scores=run.scores[i] if run.scores is not None else None,
        )


@dataclass
class _Token:
    sample: int
    token_id: int
    flagged_now: bool


class _RunState:
    """Per-sample state of one generation run, and the run's constants (model, family, positions, cache key)."""

    def __init__(self, batch: int, keep_scores: bool):
        self.finished = torch.zeros(batch, dtype=torch.bool)
        self.reason_eos = torch.zeros(batch, dtype=torch.bool)
        self.flagged = torch.zeros(batch, dtype=torch.bool)
        self.flag_step: list[int | None] = [None] * batch
        self.checks: list[list[tuple[int, float]]] = [[] for _ in range(batch)]
        self.scores: list[list[torch.Tensor]] | None = [[] for _ in range(batch)] if keep_scores else None


def _get_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values
