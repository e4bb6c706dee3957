"""Where the time of our gated generation goes, per decoding step: model forward, the check, token picking, the rest.

Method: the package is not changed; one run of ``ReminderGenerator.generate`` is measured by wrapping it.

* A forward pre-hook and forward hook on ``adapter.model`` time every model call (``torch.cuda.synchronize()``
  before each clock read on CUDA). The first call of a run is the prefill, calls made inside ``steps.run_check``
  are the check's forward, all others are decode steps.
* ``steps.encode_batch``, ``steps.run_check`` and ``steps.pick_tokens`` are swapped on the ``steps`` module for
  timed versions while a run is measured (the loop calls them as ``steps.<name>``), and
  ``ReminderGenerationConfig.logits_processors`` returns a timed ``LogitsProcessorList``; all are restored after.
  Every run asserts the wrappers were called as often as the loop should call them, so a change to the loop
  cannot make this script silently measure nothing.
* ``other`` is the total minus every measured part: the loop's Python and cache bookkeeping, the gate, mask and
  history updates, and decoding the text at the end. The measured parts are disjoint intervals inside the
  total, so ``other >= 0`` and the parts add up to the total.

The syncs cost time on a GPU (they stop the CPU from running ahead), so ``uninstrumented_s`` times the same runs
without the wrappers: ``total_s - uninstrumented_s`` is what measuring cost. Scenarios as in
``generation_overhead.py``: the zero-weight probe gives P(safe) = 0.5; ``benign`` (threshold 0.2) flags nothing,
``harmful`` (0.6) flags every sample at its first check, after which it is not checked again
(``keep_checking_after_flag`` is off). Greedy, ``min_new_tokens = max_new_tokens``. After one warm-up, medians
of ``--repeats`` runs; the breakdown is that of the instrumented run with the median (low) total.

One JSON line per (scenario, batch): ``scenario preset device machine dtype torch transformers date batch
new_tokens interval threshold image_tokens prompt_tokens repeats flag_step``; seconds ``total_s uninstrumented_s
encode_s prefill_s decode_s check_s check_forward_s check_probe_s pick_s other_s`` (``check_s = check_forward_s +
check_probe_s``, the probe and bookkeeping inside ``run_check``; ``pick_s``: logits processors + ``pick_tokens``),
``<part>_share`` (over ``total_s``) for each of them but the totals, ``decode_ms_per_step``, counts
``decode_steps checks pick_calls`` (``checks``: ``run_check`` calls, one per check of the batch), and
``settings``. Usage::

    python benchmarks/generation_profile.py                       # CPU, SmolLM2-135M in a LLaVA layout
    python benchmarks/generation_profile.py --preset tiny --batch 1 2 --new-tokens 16 --interval 8 --repeats 1
    python benchmarks/generation_profile.py --preset llava-7b --device cuda --dtype bfloat16 --batch 1 16 \\
        --torch-profiler profiles/                               # GPU; also a Chrome trace + top-20 ops per run
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import time
from pathlib import Path

import torch
from _vlm import PRESETS, build_vlm, run_header, sample_batch
from transformers import LogitsProcessorList

from reminder_lightning.reminder import ReminderGenerator, SafetyProbe, SoftPrompt
from reminder_lightning.reminder.generation import steps
from reminder_lightning.reminder.generation.config import ReminderGenerationConfig
from reminder_lightning.reminder.schedule import ReminderSchedule

SCENARIOS = {"benign": 0.2, "harmful": 0.6}  # threshold; the zero-weight probe gives P(safe) = 0.5
PARTS = ("encode", "prefill", "decode", "check", "pick", "other")  # disjoint; they add up to total_s
MEASURED = ("encode", "prefill", "decode", "check", "check_forward", "pick")
COUNTED = ("encode", "prefill", "decode", "check", "check_forward", "pick_tokens", "processors")


class LoopProfiler:
    """Seconds and call counts of one generation run's parts, gathered by hooks and wrappers (see the module
    docstring) while :meth:`active`. ``label`` also names the wrapped steps in a ``torch.profiler`` trace."""

    def __init__(self, model: torch.nn.Module, device: str):
        self.model, self.cuda = model, device.startswith("cuda")
        self.label = False
        self.reset()

    def reset(self) -> None:
        self.seconds = dict.fromkeys(MEASURED, 0.0)
        self.calls = dict.fromkeys(COUNTED, 0)
        self._in_check, self._start, self._part, self._label = False, 0.0, "prefill", None

    def clock(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _before_forward(self, module, args) -> None:
        self._part = "check_forward" if self._in_check else "decode" if self.calls["prefill"] else "prefill"
        self._label = torch.profiler.record_function(self._part) if self.label else None
        if self._label is not None:
            self._label.__enter__()
        self._start = self.clock()

    def _after_forward(self, module, args, output) -> None:
        elapsed = self.clock() - self._start
        if self._label is not None:
            self._label.__exit__(None, None, None)
        self.seconds[self._part] += elapsed
        self.calls[self._part] += 1

    def _timed(self, fn, part: str, count: str, check: bool = False):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            label = torch.profiler.record_function(part) if self.label else contextlib.nullcontext()
            start = self.clock()
            self._in_check = check
            try:
                with label:
                    return fn(*args, **kwargs)
            finally:
                self._in_check = False
                self.seconds[part] += self.clock() - start
                self.calls[count] += 1

        return timed

    @contextlib.contextmanager
    def active(self):
        """Hooks on the model and timed steps for the duration; the originals are back afterwards."""
        saved = {name: getattr(steps, name) for name in ("encode_batch", "run_check", "pick_tokens")}
        saved_processors = ReminderGenerationConfig.logits_processors
        timed_call = self._timed(LogitsProcessorList.__call__, "pick", "processors")
        timed_list = type("TimedProcessors", (LogitsProcessorList,), {"__call__": timed_call})
        handles = [
            self.model.register_forward_pre_hook(self._before_forward),
            self.model.register_forward_hook(self._after_forward),
        ]
        try:
            steps.encode_batch = self._timed(saved["encode_batch"], "encode", "encode")
            steps.run_check = self._timed(saved["run_check"], "check", "check", check=True)
            steps.pick_tokens = self._timed(saved["pick_tokens"], "pick", "pick_tokens")
            ReminderGenerationConfig.logits_processors = lambda cfg: timed_list(saved_processors(cfg))
            yield self
        finally:
            for handle in handles:
                handle.remove()
            for name, fn in saved.items():
                setattr(steps, name, fn)
            ReminderGenerationConfig.logits_processors = saved_processors

    def breakdown(self, total: float) -> dict[str, float]:
        """Seconds per part (``other`` = ``total`` minus the measured parts) and the probe's share of the check."""
        parts = {p: self.seconds[p] for p in PARTS[:-1]}
        parts["other"] = total - sum(parts.values())
        parts["check_forward"] = self.seconds["check_forward"]
        parts["check_probe"] = self.seconds["check"] - self.seconds["check_forward"]
        return parts


def run_config(generator, profiler: LoopProfiler, scenario: str, batch: int, image_tokens: int, args) -> dict:
    """Profile one (scenario, batch): a checked warm-up, then ``repeats`` plain and instrumented runs in turn."""
    new_tokens, interval, threshold = args.new_tokens, args.interval, SCENARIOS[scenario]
    schedule = ReminderSchedule(interval=interval, threshold=threshold)
    points = schedule.check_points(new_tokens)  # the loop stops before checking after the last token
    harmful = scenario == "harmful"
    flag_step = points[0] if harmful else None
    checks = 1 if harmful and not schedule.keep_checking_after_flag else len(points)
    images, prompts = sample_batch(batch)
    settings = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

    def run() -> list:
        return generator.generate(
            images, prompts, interval=interval, threshold=threshold, mode="gated", **settings
        )

    def instrumented() -> float:
        profiler.reset()
        with profiler.active():
            start = profiler.clock()
            outs = run()
            total = profiler.clock() - start
        assert all(o.flag_step == flag_step and len(o.token_ids) == new_tokens for o in outs), (
            f"{scenario}: expected every sample flagged at {flag_step}, got {[o.flag_step for o in outs]}"
        )
        want = dict(encode=1, prefill=1, decode=new_tokens - 1, check=checks, check_forward=checks)
        want.update(pick_tokens=new_tokens, processors=new_tokens)
        assert profiler.calls == want, f"wrappers called {profiler.calls}, expected {want}: has the loop changed?"
        return total

    instrumented()  # warm-up
    plain, runs = [], []
    for _ in range(args.repeats):
        profiler.clock()
        start = time.perf_counter()
        run()
        plain.append(profiler.clock() - start)
        total = instrumented()
        runs.append((total, profiler.breakdown(total)))
    total, parts = sorted(runs, key=lambda r: r[0])[(len(runs) - 1) // 2]  # the median_low run
    if args.torch_profiler:
        _record(profiler, run, Path(args.torch_profiler) / f"{scenario}-b{batch}")
    row = {
        **run_header(args, scenario, batch),
        "interval": interval,
        "threshold": threshold,
        "image_tokens": image_tokens,
        "prompt_tokens": steps.encode_batch(generator.adapter, images, prompts)["input_ids"].shape[1],
        "repeats": args.repeats,
        "flag_step": flag_step,
        "total_s": total,
        "uninstrumented_s": statistics.median(plain),
    }
    row.update({f"{p}_s": s for p, s in parts.items()})
    row.update({f"{p}_share": s / total for p, s in parts.items()})
    row["decode_ms_per_step"] = 1000 * parts["decode"] / (new_tokens - 1) if new_tokens > 1 else None
    row.update(decode_steps=new_tokens - 1, checks=checks, pick_calls=new_tokens)
    return {**row, "settings": vars(args)}


def _record(profiler: LoopProfiler, run, stem: Path) -> None:
    """One more instrumented run under ``torch.profiler``: ``<stem>.trace.json`` and ``<stem>.top20.txt``."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if profiler.cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    profiler.reset()
    profiler.label = True
    try:
        with torch.profiler.profile(activities=activities) as prof, profiler.active():
            run()
    finally:
        profiler.label = False
    prof.export_chrome_trace(str(stem.with_suffix(".trace.json")))
    sort_by = "self_device_time_total" if profiler.cuda else "self_cpu_time_total"
    stem.with_suffix(".top20.txt").write_text(prof.key_averages().table(sort_by=sort_by, row_limit=20))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smollm2-llava", choices=sorted(PRESETS))
    parser.add_argument("--scenario", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--interval", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print only one JSON object per configuration")
    parser.add_argument("--torch-profiler", metavar="DIR", help="also record one run per configuration here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: at least 1.")
    if "harmful" in args.scenario and args.new_tokens <= args.interval:
        parser.error(f"--interval {args.interval} must be below --new-tokens {args.new_tokens} to flag.")
    if args.threads:
        torch.set_num_threads(args.threads)
    adapter, image_tokens = build_vlm(args.preset, args.device, getattr(torch, args.dtype))
    soft = SoftPrompt(4, adapter.hidden_size).to(adapter.device)
    soft.initialize("text", adapter.input_embeddings(), adapter.tokenizer)
    probe = SafetyProbe(adapter.hidden_size, 4).to(adapter.device)  # zero weights: P(safe) = 0.5
    generator = ReminderGenerator(adapter, soft, probe)
    profiler = LoopProfiler(adapter.model, args.device)
    results = []
    for scenario in args.scenario:
        for batch in args.batch:
            results.append(run_config(generator, profiler, scenario, batch, image_tokens, args))
            print(json.dumps(results[-1]), flush=True)
    if not args.json:
        print(_table(results))
    return results


def _table(results: list[dict]) -> str:
    """Markdown, one row per configuration: seconds (share of the total)."""
    r = results[0]
    lines = [
        f"{r['preset']}, {r['machine']}, {r['dtype']}, {r['new_tokens']} new tokens, interval {r['interval']}, "
        f"run with the median of {r['repeats']}:",
        "",
        "| scenario | batch | total s (plain) | encode | prefill | decode (ms/step) | check (fwd + probe) | pick "
        "| other | steps | checks |",
        "|---" * 11 + "|",
    ]
    for r in results:
        cell = functools.partial(_cell, r)
        decode = f"{cell('decode')} {r['decode_ms_per_step']:.2f}" if r["decode_ms_per_step"] else cell("decode")
        check = f"{cell('check')} = {r['check_forward_s']:.4f} + {r['check_probe_s']:.4f}"
        cells = [f"{r['total_s']:.4f} ({r['uninstrumented_s']:.4f})", cell("encode"), cell("prefill"), decode]
        cells += [check, cell("pick"), cell("other"), str(r["decode_steps"]), str(r["checks"])]
        lines.append(f"| {r['scenario']} | {r['batch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(row: dict, part: str) -> str:
    return f"{row[f'{part}_s']:.4f} ({100 * row[f'{part}_share']:.1f}%)"


if __name__ == "__main__":
    main()
