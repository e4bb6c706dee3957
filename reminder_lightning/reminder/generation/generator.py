"""ReminderGenerator: batched generation with the Safety Reminder, usable without Lightning.

Every ``interval`` generated tokens (after 15, 31, 47, ... with the default 16, or at a position drawn per sample in
each window with ``jitter``; see :class:`~reminder_lightning.reminder.schedule.ReminderSchedule`) the reminder
vectors are appended to the *existing* KV cache of every sample still being checked, and the probe reads the hidden
state at the last reminder token. A kept reminder stays in the context and the sample continues from the logits
after it; an unkept one is masked out and the sample continues from the logits it had before the check. Nothing is
recomputed: a check costs one forward over ``num_tokens`` positions. Only public APIs are used (``forward`` with a
cache, attention masks, position ids, logits processors); positions come from the family, so Qwen2-VL's 3-D rotary
positions are right after the image.

Caveat: on models with sliding-window attention (Gemma 3's local layers), masked reminder slots still take window
room, so outputs can differ from an unchecked run once a sequence exceeds the window.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.generation import steps
from reminder_lightning.reminder.generation.config import ReminderGenerationConfig, ReminderOutput, StepEvent
from reminder_lightning.reminder.generation.text import ShownText, seam
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.schedule import GateMode, ReminderSchedule
from reminder_lightning.reminder.soft_prompt import SoftPrompt
from reminder_lightning.vlm.adapter import VLMAdapter


class ReminderGenerator:
    """Batched generation with the Safety Reminder.

    Args:
        adapter: The VLM (see :meth:`VLMAdapter.wrap` for a plain model + processor).
        soft_prompt: The reminder vectors; None for undefended generation through the same loop (mode ``never``).
        probe: The safety probe; required for mode ``gated``.
        config: Default decoding settings and schedule.
    """

    def __init__(
        self,
        adapter: VLMAdapter,
        soft_prompt: SoftPrompt | None,
        probe: SafetyProbe | None = None,
        config: ReminderGenerationConfig | None = None,
    ):
        config = config or ReminderGenerationConfig()
        if soft_prompt is None:
            config = config.updated(mode=GateMode.never)
        elif soft_prompt.hidden_size != adapter.hidden_size:
            raise ValueError(
                f"The reminder has width {soft_prompt.hidden_size} but the model's hidden size is "
                f"{adapter.hidden_size}: it was trained for another model."
            )
        if probe is not None:
            n = adapter.num_hidden_states
            if probe.hidden_size != adapter.hidden_size or not all(-n <= i < n for i in probe.layers):
                raise ValueError(
                    f"The probe reads hidden_states{probe.layers} of width {probe.hidden_size}, but the model "
                    f"has {n} hidden_states of width {adapter.hidden_size}: it was fitted on another model. Fix: "
                    "refit it with `python -m reminder_lightning probe` on this model."
                )
        self.adapter = adapter
        self.soft_prompt = soft_prompt.to(adapter.device) if soft_prompt is not None else None
        self.probe = probe.to(adapter.device) if probe is not None else None
        self.config = config
        self.injector = (
            ReminderInjector(adapter.input_embeddings(), self.soft_prompt)
            if self.soft_prompt is not None
            else None
        )

    @property
    def undefended(self) -> bool:
        return self.soft_prompt is None

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def generate(self, images: list | None, prompts: list[str], **overrides: Any) -> list[ReminderOutput]:
        """Generate for a batch of (image or None, prompt); ``overrides`` replace config or schedule fields."""
        cfg = self._config(overrides)
        tokens: list[list[int]] = [[] for _ in prompts]
        run = None
        for event in self._run(images, prompts, cfg):
            if isinstance(event, _Run):
                run = event
            else:
                tokens[event.sample].append(event.token_id)
        return [self._output(i, tokens[i], run, cfg) for i in range(len(prompts))]

    @torch.no_grad()
    def stream(self, images: list | None, prompts: list[str], **overrides: Any) -> Iterator[StepEvent]:
        """Yield :class:`StepEvent` text increments as tokens are generated. The pieces of a sample join to its
        ``generate`` text (see :mod:`~reminder_lightning.reminder.generation.text`: while a flag may still come,
        the word being written is shown once whitespace ends it)."""
        cfg = self._config(overrides)
        decode = partial(self.adapter.tokenizer.decode, skip_special_tokens=True)
        shown: dict[int, ShownText] = {}
        for event in self._run(images, prompts, cfg):
            if isinstance(event, _Run):
                continue
            text = shown.setdefault(event.sample, ShownText(decode))
            new = text.add(event.token_id, event.flagged_now, event.last)
            yield StepEvent(event.sample, event.token_id, new, event.flagged_now)

    # ------------------------------------------------------------------ internals
    def _config(self, overrides: dict[str, Any]) -> ReminderGenerationConfig:
        cfg = self.config.updated(**overrides)
        if self.undefended and cfg.mode is not GateMode.never:
            raise ValueError("This generator has no reminder (soft_prompt=None): only mode='never' is possible.")
        if cfg.mode is GateMode.gated and self.probe is None:
            raise ValueError(
                "mode='gated' needs a probe; pass one (or a reminder artifact with a probe), or use "
                "mode='always' / 'never'."
            )
        return cfg

    def _run(self, images, prompts, cfg: ReminderGenerationConfig):
        """The loop; yields a ``_Token`` per generated token of a live sample and, last, the ``_Run``."""
        model, family = self.adapter.model, self.adapter.family
        inputs = steps.encode_batch(self.adapter, images, prompts)
        batch, device = inputs["input_ids"].shape[0], inputs["input_ids"].device
        cache_key, last_only = steps.forward_kwargs(model)
        attention = inputs["attention_mask"].clone()
        history = inputs["input_ids"].clone()  # real tokens only, for logits processors
        position_ids, pos_state = family.prefill_positions(model, inputs)
        eos = torch.tensor(steps.eos_ids(self.adapter), device=device).unique()
        processors = cfg.logits_processors()
        if cfg.min_new_tokens > 0:
            from transformers import MinNewTokensLengthLogitsProcessor

            processors.insert(0, MinNewTokensLengthLogitsProcessor(history.shape[1], cfg.min_new_tokens, eos))
        generator = None
        if cfg.do_sample and cfg.seed is not None:
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
        placeholders = torch.tensor(self.injector.placeholder_ids if self.injector else [], device=device)
        pad = self.adapter.inputs.pad_token_id
        run = _Run(batch, cfg.output_scores)
        run.plan_checks(cfg, prompts)
        with self.injector if self.injector is not None else contextlib.nullcontext():
            out = model(**inputs, position_ids=position_ids, use_cache=True, **last_only)
            cache, next_logits = steps.get_cache(out), out.logits[:, -1].float()
            eos_set = set(eos.tolist())
            for generated in range(1, cfg.max_new_tokens + cfg.refusal_room + 1):
                scores = processors(history, next_logits)
                token = steps.pick_tokens(scores, cfg.do_sample, generator)
                token = torch.where(run.finished.to(device), torch.full_like(token, pad), token)
                ending = run.end_checks(token, eos, generated, cfg.schedule)
                if ending is not None:  # check_at_end: the answer ends after tokens no check has read
                    after, p_safe, cache = steps.run_check(
                        model, family, cache, cache_key, attention, ending, placeholders, pos_state, self.probe
                    )
                    keep = steps.gate(ending, p_safe, cfg.schedule)
                    run.record_check(generated - 1, ending, p_safe, keep)
                    attention = steps.keep_reminder(attention, keep, placeholders.numel())
                    if bool(keep.any()):  # a kept reminder replaces the end: the answer goes on after it
                        rescored = processors(history, after)
                        kept = keep.to(device)
                        token = torch.where(kept, steps.pick_tokens(rescored, cfg.do_sample, generator), token)
                        scores = torch.where(kept[:, None], rescored, scores)
                token_ids, finished = token.tolist(), run.finished.tolist()  # one device sync per step
                at_limit = [generated >= run.limit(i, cfg) for i in range(batch)]
                for i in range(batch):
                    if not finished[i]:
                        if run.scores is not None:
                            run.scores[i].append(scores[i].cpu())
                        last = at_limit[i] or token_ids[i] in eos_set
                        yield _Token(i, token_ids[i], run.flag_step[i] == generated - 1, last)
                newly_done = torch.isin(torch.tensor(token_ids), eos.cpu()) & ~run.finished
                run.reason_eos |= newly_done
                run.finished |= newly_done | torch.tensor(at_limit)
                history = torch.cat([history, token[:, None]], dim=1)
                if bool(run.finished.all()):
                    break
                attention = torch.cat([attention, attention.new_ones(batch, 1)], dim=1)
                out = model(
                    input_ids=token[:, None],
                    attention_mask=attention,
                    position_ids=family.decode_positions(attention, 1, pos_state),
                    use_cache=True,
                    **{cache_key: cache},
                )
                cache, next_logits = steps.get_cache(out), out.logits[:, -1].float()
                due = run.due(generated)
                if due is not None:
                    checking = due & ~run.finished & (~run.flagged | cfg.schedule.keep_checking_after_flag)
                    if bool(checking.any()):
                        after, p_safe, cache = steps.run_check(
                            model,
                            family,
                            cache,
                            cache_key,
                            attention,
                            checking,
                            placeholders,
                            pos_state,
                            self.probe,
                        )
                        keep = steps.gate(checking, p_safe, cfg.schedule)
                        run.record_check(generated, checking, p_safe, keep)
                        attention = steps.keep_reminder(attention, keep, placeholders.numel())
                        next_logits = torch.where(keep.to(device)[:, None], after, next_logits)
        yield run

    def _output(self, i: int, tokens: list[int], run: _Run, cfg: ReminderGenerationConfig) -> ReminderOutput:
        tok = self.adapter.tokenizer
        step = run.flag_step[i]
        before = tokens if step is None else tokens[:step]
        after = [] if step is None else tokens[step:]
        text_before = tok.decode(before, skip_special_tokens=True)
        text_after = tok.decode(after, skip_special_tokens=True)
        if step is None:
            text = text_before
        elif cfg.return_text == "after_reminder":
            text = text_after
        else:
            text = seam(text_before, text_after)
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
    last: bool = False


class _Run:
    """Per-sample state of one generation run."""

    def __init__(self, batch: int, keep_scores: bool):
        self.finished = torch.zeros(batch, dtype=torch.bool)
        self.reason_eos = torch.zeros(batch, dtype=torch.bool)
        self.flagged = torch.zeros(batch, dtype=torch.bool)
        self.flag_step: list[int | None] = [None] * batch
        self.checks: list[list[tuple[int, float]]] = [[] for _ in range(batch)]
        self.scores: list[list[torch.Tensor]] | None = [[] for _ in range(batch)] if keep_scores else None

    def plan_checks(self, cfg: ReminderGenerationConfig, prompts: list[str]) -> None:
        """Each sample's check points: the schedule's fixed ones, or (``jitter``) drawn per sample from a generator
        seeded by ``cfg.seed`` and the prompt (the same prompt gets the same points in any batch), or from the
        system's randomness when ``seed`` is None (unpredictable, as deployed)."""
        schedule, length = cfg.schedule, cfg.max_new_tokens + cfg.refusal_room + 1
        self.check_at: dict[int, torch.Tensor] = {}
        if schedule.mode is GateMode.never:
            return
        for i, prompt in enumerate(prompts):
            rng = None
            if schedule.jitter:
                rng = random.Random(f"{cfg.seed}:{prompt}") if cfg.seed is not None else random.SystemRandom()
            for c in schedule.check_points(length, rng):
                self.check_at.setdefault(c, torch.zeros(len(prompts), dtype=torch.bool))[i] = True

    def end_checks(self, token, eos, generated: int, schedule: ReminderSchedule) -> torch.Tensor | None:
        """``(B,)`` the live samples whose ``generated``-th token ends the answer after ``generated - 1`` tokens
        that get an end check (:meth:`ReminderSchedule.end_point`: no check read there yet), or None."""
        if not schedule.check_at_end or schedule.mode is GateMode.never or generated < 2:
            return None
        live = ~self.finished & (~self.flagged | schedule.keep_checking_after_flag)
        ends = torch.isin(token.cpu(), eos.cpu()) & live
        for i in ends.nonzero().flatten().tolist():
            ends[i] = schedule.end_point(generated - 1, [c for c, _ in self.checks[i]]) is not None
        return ends if bool(ends.any()) else None

    def due(self, generated: int) -> torch.Tensor | None:
        """``(B,)`` the samples with a check after ``generated`` tokens, or None when no sample has one."""
        return self.check_at.get(generated)

    def limit(self, i: int, cfg: ReminderGenerationConfig) -> int:
        """Tokens sample ``i`` may generate: ``max_new_tokens``, or up to ``refusal_room`` after its kept reminder."""
        step = self.flag_step[i]
        return cfg.max_new_tokens if step is None else max(cfg.max_new_tokens, step + cfg.refusal_room)

    def record_check(
        self, generated: int, checking: torch.Tensor, p_safe: torch.Tensor, keep: torch.Tensor
    ) -> None:
        for i in range(len(self.checks)):
            if checking[i]:
                self.checks[i].append((generated, float(p_safe[i])))
            if keep[i] and not self.flagged[i]:
                self.flagged[i] = True
                self.flag_step[i] = generated
