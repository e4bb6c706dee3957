"""What the Safety Reminder costs at inference, with and without flags, against plain generation and the reference.

Scenarios (``--scenario``): the probe has zero weights, so P(safe) = 0.5 at every check. ``benign`` (threshold 0.2):
no check flags. ``harmful`` (threshold 0.6): every sample is flagged at its first check (after ``interval - 1``
tokens). Both are asserted, so a run cannot silently measure the wrong thing. Methods, all greedy with
``min_new_tokens = max_new_tokens``; every ratio is over ``undefended`` from the same configuration:

* ``undefended``: plain ``model.generate`` (KV cache).
* ``reminder``: our gated generation: at each check the reminder goes into the existing KV cache and the probe
  reads P(safe); a flagged sample keeps the reminder and decodes on in place, to ``new_tokens`` in all.
* ``reminder_never``: our loop in mode ``never`` (no checks): the loop's own cost (goal: ratio <= 1.02).
* ``recompute``: ``generate`` plus the reference's check: before the token after each check point, a forward
  without the cache over image + prompt + generated tokens + reminder (all logits, as the reference). Flags are
  recorded, not acted on.
* ``reference_restart`` (``harmful`` only; in ``benign`` it would be ``recompute``): the reference's whole cost.
  Pass 1 is ``recompute`` that also stops flagged samples; as in the reference's loop the check runs before the
  forward, so a flagged sample stops one token past its check point, and checks still run over the whole batch
  while any sample is live. Pass 2, flagged samples only: ``generate`` from scratch (image included) on prompt +
  pass-1 answer + reminder. The reference gives both passes the same generation settings, so pass 2 gets the full
  ``new_tokens`` (``--restart-budget full``); ``remaining`` gives it what pass 1 left. Not modelled, so this is a
  lower bound: the reference deep-copies its generation kwargs (KV cache included) at every check, and decodes and
  re-tokenizes the pass-1 text.

Random weights of real shapes (``_vlm.py``): timings are real, words are not. Medians of ``--repeats`` runs with
the methods interleaved. The warm-up outputs are checked: for the first sample, ``reminder_never`` and
``recompute`` give ``undefended``'s tokens, and ``reminder`` and ``reference_restart`` do up to their flag (all of
them when benign).

One JSON line per (scenario, interval, batch): ``scenario preset device machine dtype torch transformers date
batch new_tokens interval threshold image_tokens prompt_tokens checks_per_sample flag_step restart_budget
restart_new_tokens repeats``, ``<method>_s`` (median seconds) and ``<method>_ratio`` (over ``undefended_s``) for
``undefended reminder reminder_never recompute reference_restart`` (null where not run), and ``settings`` (the
arguments). ``flag_step``: tokens generated at the flag (null when benign). Usage::

    python benchmarks/generation_overhead.py                      # CPU, SmolLM2-135M in a LLaVA layout, interval 16 (< 10 min)
    python benchmarks/generation_overhead.py --interval 16 8      # both intervals (about twice as long)
    python benchmarks/generation_overhead.py --json               # JSON lines only, no table
    python benchmarks/generation_overhead.py --preset tiny --batch 1 2 --new-tokens 16 --interval 8 4 --repeats 1
    python benchmarks/generation_overhead.py --preset llava-7b --device cuda --dtype bfloat16 \\
        --batch 1 8 16 32 --interval 16 8 --new-tokens 256       # the full grid (GPU)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from _vlm import PRESETS, build_vlm, run_header, sample_batch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from reminder_lightning.reminder import ReminderGenerator, ReminderInjector, SafetyProbe, SoftPrompt
from reminder_lightning.reminder.generation.steps import encode_batch
from reminder_lightning.reminder.schedule import ReminderSchedule

SCENARIOS = {"benign": 0.2, "harmful": 0.6}  # threshold; the zero-weight probe gives P(safe) = 0.5
METHODS = ("undefended", "reminder", "reminder_never", "recompute", "reference_restart")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_interleaved(fns: dict[str, Callable], device: str, repeats: int) -> tuple[dict[str, float], dict]:
    """Median seconds of each function, and each one's output from its warm-up call. After one warm-up each, the
    methods alternate in rotating order every repeat, so drift in a shared machine's load hits all of them alike."""
    outputs = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}, outputs


class RecomputeCheck:
    """The reference's check as a logits processor for ``model.generate``: before the token after each check point,
    a forward without the cache over the whole batch (image + prompt + generated + reminder placeholders), the probe
    at the last reminder token. Records each sample's first flag (tokens generated at that check)."""

    def __init__(self, adapter, injector, probe, enc: dict, schedule: ReminderSchedule):
        self.adapter, self.injector, self.probe, self.schedule = adapter, injector, probe, schedule
        self.pixel_values, self.prompt_mask = enc["pixel_values"], enc["attention_mask"]
        self.reminder = torch.tensor(injector.placeholder_ids, device=adapter.device)
        self.reset()

    def reset(self) -> None:
        self.flag_step: list[int | None] = [None] * self.prompt_mask.shape[0]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        prompt_len = self.prompt_mask.shape[1]
        generated = input_ids.shape[1] - prompt_len
        if self.schedule.is_check(generated):
            ids = torch.cat([input_ids, self.reminder.expand(input_ids.shape[0], -1)], dim=1)
            mask = torch.cat(
                [self.prompt_mask, self.prompt_mask.new_ones(ids.shape[0], ids.shape[1] - prompt_len)], 1
            )
            with self.injector:
                out = self.adapter.model(
                    input_ids=ids, attention_mask=mask, pixel_values=self.pixel_values, output_hidden_states=True
                )
            p_safe = self.probe(self.probe.select(out.hidden_states)[:, -1]).float().cpu()
            for i, flagged in enumerate((p_safe < self.schedule.keep_below).tolist()):
                if flagged and self.flag_step[i] is None:
                    self.flag_step[i] = generated
        return scores


class StopFlagged(StoppingCriteria):
    """Ends the samples a :class:`RecomputeCheck` has flagged, as the reference's first pass does."""

    def __init__(self, check: RecomputeCheck):
        self.check = check

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.tensor([s is not None for s in self.check.flag_step], device=input_ids.device)


def restart(adapter, injector, enc: dict, first: torch.Tensor, flag_step: list, budget: int) -> torch.Tensor:
    """The reference's second pass: ``generate`` from scratch on prompt + pass-1 answer (to one token past the
    flag) + reminder, for the flagged samples only, left-padded; ``(flagged, width + new)`` sequences."""
    prompt_len, pad = enc["input_ids"].shape[1], adapter.inputs.pad_token_id
    reminder = torch.tensor(injector.placeholder_ids, device=first.device)
    flagged = [i for i, s in enumerate(flag_step) if s is not None]
    rows = [torch.cat([first[i, : prompt_len + flag_step[i] + 1], reminder]) for i in flagged]
    width = max(len(r) for r in rows)
    ids = first.new_full((len(rows), width), pad)
    mask = torch.zeros_like(ids)
    for j, (i, row) in enumerate(zip(flagged, rows, strict=True)):
        ids[j, width - len(row) :] = row
        mask[j, width - len(row) :] = torch.cat([enc["attention_mask"][i], mask.new_ones(len(row) - prompt_len)])
    settings = dict(max_new_tokens=budget, min_new_tokens=budget, do_sample=False)
    with torch.no_grad(), injector:
        return adapter.model.generate(
            input_ids=ids, attention_mask=mask, pixel_values=enc["pixel_values"][flagged], **settings
        )


def run_config(adapter, parts, scenario: str, batch: int, interval: int, args) -> dict:
    """Time every method for one (scenario, interval, batch); check what they generated; the JSON row."""
    soft, probe, generator, image_tokens = parts
    new_tokens, threshold = args.new_tokens, SCENARIOS[scenario]
    schedule = ReminderSchedule(interval=interval, threshold=threshold)
    check_points = schedule.check_points(new_tokens)
    images, prompts = sample_batch(batch)
    enc = encode_batch(adapter, images, prompts)
    prompt_len = enc["input_ids"].shape[1]
    settings = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    injector = ReminderInjector(adapter.input_embeddings(), soft)
    check = RecomputeCheck(adapter, injector, probe, enc, schedule)  # recompute's
    first_check = RecomputeCheck(adapter, injector, probe, enc, schedule)  # reference_restart's pass 1
    harmful = scenario == "harmful"
    flag_step = check_points[0] if harmful else None
    first_len = (flag_step or 0) + 1
    budget = new_tokens if args.restart_budget == "full" else max(1, new_tokens - first_len)

    def undefended():
        with torch.no_grad():
            return adapter.model.generate(**enc, **settings)

    def reminder():
        outs = generator.generate(
            images, prompts, interval=interval, threshold=threshold, mode="gated", **settings
        )
        assert all(o.flag_step == flag_step and len(o.token_ids) == new_tokens for o in outs), (
            f"{scenario}: expected every sample flagged at {flag_step}, got {[o.flag_step for o in outs]}"
        )
        return outs

    def reminder_never():
        return generator.generate(images, prompts, mode="never", **settings)

    def recompute():
        check.reset()
        with torch.no_grad():
            return adapter.model.generate(**enc, **settings, logits_processor=LogitsProcessorList([check]))

    def reference_restart():
        first_check.reset()
        with torch.no_grad():
            first = adapter.model.generate(
                **enc,
                **settings,
                logits_processor=LogitsProcessorList([first_check]),
                stopping_criteria=StoppingCriteriaList([StopFlagged(first_check)]),
            )
        steps = list(first_check.flag_step)
        assert steps == [flag_step] * batch and first.shape[1] == prompt_len + first_len, (
            f"reference pass 1: flags {steps}, {first.shape[1] - prompt_len} tokens, not {flag_step}, {first_len}"
        )
        second = restart(adapter, injector, enc, first, steps, budget)
        assert second.shape == (batch, prompt_len + first_len + soft.num_tokens + budget), second.shape
        return first, second

    fns = dict(undefended=undefended, reminder=reminder, reminder_never=reminder_never, recompute=recompute)
    if harmful:
        fns["reference_restart"] = reference_restart
    timings, outputs = _timed_interleaved(fns, args.device, args.repeats)
    _check_tokens(outputs, prompt_len, new_tokens, flag_step)
    row = {
        **run_header(args, scenario, batch),
        "interval": interval,
        "threshold": threshold,
        "image_tokens": image_tokens,
        "prompt_tokens": prompt_len,
        "checks_per_sample": len(check_points),
        "flag_step": flag_step,
        "restart_budget": args.restart_budget,
        "restart_new_tokens": budget if harmful else None,
        "repeats": args.repeats,
    }
    for name in METHODS:
        row[f"{name}_s"] = timings.get(name)
        if name != "undefended":
            row[f"{name}_ratio"] = timings[name] / timings["undefended"] if name in timings else None
    return {**row, "settings": vars(args)}


def _check_tokens(outputs: dict, prompt_len: int, new_tokens: int, flag_step: int | None) -> None:
    """First sample: the methods give plain ``generate``'s tokens where they should (see the module docstring)."""
    plain = outputs["undefended"][0, prompt_len:].tolist()
    assert len(plain) == new_tokens, f"undefended generated {len(plain)} tokens, not {new_tokens}"
    cut = new_tokens if flag_step is None else flag_step  # ours: the tokens before the kept reminder
    got = {
        "reminder_never": (outputs["reminder_never"][0].token_ids, new_tokens),
        "recompute": (outputs["recompute"][0, prompt_len:].tolist(), new_tokens),
        "reminder": (outputs["reminder"][0].token_ids[:cut], cut),
    }
    if "reference_restart" in outputs:  # pass 1 stops one token past the flag
        got["reference_restart"] = (outputs["reference_restart"][0][0, prompt_len:].tolist(), flag_step + 1)
    for name, (tokens, n) in got.items():
        assert tokens == plain[:n], f"{name} differs from plain generate: {tokens} vs {plain[:n]}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smollm2-llava", choices=sorted(PRESETS))
    parser.add_argument("--scenario", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--interval", type=int, nargs="+", default=[16])  # the GPU grid adds 8
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--restart-budget", default="full", choices=["full", "remaining"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print only one JSON object per configuration")
    args = parser.parse_args(argv)
    if "harmful" in args.scenario and any(args.new_tokens <= i for i in args.interval):
        parser.error(f"--interval {args.interval}: each must be below --new-tokens {args.new_tokens} to flag.")
    if args.threads:
        torch.set_num_threads(args.threads)
    adapter, image_tokens = build_vlm(args.preset, args.device, getattr(torch, args.dtype))
    soft = SoftPrompt(4, adapter.hidden_size).to(adapter.device)
    soft.initialize("text", adapter.input_embeddings(), adapter.tokenizer)
    probe = SafetyProbe(adapter.hidden_size, 4).to(adapter.device)  # zero weights: P(safe) = 0.5
    parts = (soft, probe, ReminderGenerator(adapter, soft, probe), image_tokens)
    results = []
    for scenario in args.scenario:
        for interval in args.interval:
            for batch in args.batch:
                results.append(run_config(adapter, parts, scenario, batch, interval, args))
                print(json.dumps(results[-1]), flush=True)
    if not args.json:
        print(_table(results))
    return results


def _table(results: list[dict]) -> str:
    """Markdown, one row per configuration: median seconds (ratio over ``undefended``)."""
    r = results[0]
    lines = [
        f"{r['preset']}, {r['machine']}, {r['dtype']}, {r['new_tokens']} new tokens, median of {r['repeats']}:",
        "",
        "| scenario | interval | batch | " + " | ".join(METHODS) + " |",
        "|---" * (3 + len(METHODS)) + "|",
    ]
    for r in results:
        cells = [f"{r['undefended_s']:.3f}"]
        for m in METHODS[1:]:
            cells.append("-" if r[f"{m}_s"] is None else f"{r[f'{m}_s']:.3f} ({r[f'{m}_ratio']:.3f})")
        lines.append(f"| {r['scenario']} | {r['interval']} | {r['batch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
