"""What the Safety Reminder costs at inference on benign prompts (no flags), against two baselines.

Three ways to generate the same number of tokens for the same prompts, timed in one process:

* ``undefended``: plain ``model.generate`` (greedy, KV cache).
* ``reminder``: our gated generation: every ``interval`` tokens the reminder goes into the existing KV
  cache, the probe reads P(safe), nothing is kept (benign: no flags).
* ``recompute``: the reference approach: ``generate`` as usual, plus at every check a full forward
  *without the cache* over image + prompt + generated text + reminder (the reference code's check); flagged
  samples would also be regenerated from scratch, which benign prompts never need.

Ratios are against ``undefended`` from the same run. Random weights of real shapes: the timings are real,
the words are not. Usage::

    python benchmarks/generation_overhead.py                      # CPU, SmolLM2-135M in a LLaVA layout, batch 1 and 8
    python benchmarks/generation_overhead.py --json               # one JSON object per configuration, nothing else
    python benchmarks/generation_overhead.py --preset llava-7b --device cuda --dtype bfloat16 --batch 1 16
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date

import torch
from PIL import Image

PRESETS = {
    # name: (text config, vision config, image size)
    "tiny": (
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=640,
        ),
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        112,
    ),
    "smollm2-llava": (
        dict(
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            vocab_size=49152,
            tie_word_embeddings=True,
            rope_theta=100000.0,
        ),
        dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4),
        112,
    ),
    "llava-7b": (
        dict(
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32064,
        ),
        dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
        336,
    ),
}
PROMPTS = [
    "Describe this picture in detail.",
    "What colours can you see here?",
    "Write a short story about this image.",
    "What is happening in this photo?",
    "List the objects in the image.",
    "Is this a good place for a picnic?",
    "What time of day does this look like?",
    "Suggest a title for this image.",
]


def build_vlm(preset: str, device: str, dtype: torch.dtype):
    """A LLaVA-1.5-layout VLM with random weights of the preset's shapes, and a working processor."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    from reminder_lightning.vlm.adapter import VLMAdapter
    from reminder_lightning.vlm.tiny import LLAVA_CHAT_TEMPLATE, llama_style_tokenizer, llava_processor

    text, vision, image_size = PRESETS[preset]
    tokenizer = llama_style_tokenizer()
    processor = llava_processor(tokenizer, image_size, LLAVA_CHAT_TEMPLATE)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=image_size, patch_size=14, **vision),
        text_config=LlamaConfig(
            max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, pad_token_id=3, **text
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=3,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config).to(dtype).eval()
    model.generation_config.pad_token_id = 3
    return VLMAdapter.wrap(model, processor), (image_size // 14) ** 2


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_interleaved(fns: dict, device: str, repeats: int) -> dict[str, float]:
    """Median seconds of each function; one warm-up each, then the methods alternate in rotating order
    every repeat, so drift in a shared machine's load hits all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


class RecomputeCheck:
    """A logits processor that performs the reference check: a cache-free forward over the whole sequence."""

    def __init__(self, adapter, injector, probe, pixel_values, interval: int, prompt_len: int):
        self.adapter, self.injector, self.probe = adapter, injector, probe
        self.pixel_values, self.interval, self.prompt_len = pixel_values, interval, prompt_len
        self.checks = 0

    def __call__(self, input_ids, scores):
        generated = input_ids.shape[1] - self.prompt_len
        if generated > 0 and (generated + 1) % self.interval == 0:
            reminder = torch.tensor(self.injector.placeholder_ids, device=input_ids.device)
            ids = torch.cat([input_ids, reminder.expand(input_ids.shape[0], -1)], dim=1)
            mask = (ids != self.adapter.inputs.pad_token_id).long()
            with self.injector:
                out = self.adapter.model(
                    input_ids=ids, attention_mask=mask, pixel_values=self.pixel_values, output_hidden_states=True
                )
            self.probe(out.hidden_states[-1][:, -1])
            self.checks += 1
        return scores


def run_config(
    adapter, image_tokens, batch: int, new_tokens: int, interval: int, repeats: int, device: str
) -> dict:
    from transformers import LogitsProcessorList

    from reminder_lightning.reminder import ReminderGenerator, ReminderInjector, SafetyProbe, SoftPrompt
    from reminder_lightning.reminder.generation.steps import encode_batch

    soft = SoftPrompt(4, adapter.hidden_size)
    soft.initialize("text", adapter.input_embeddings(), adapter.tokenizer)
    probe = SafetyProbe(adapter.hidden_size, 4)  # zero weights: P(safe) = 0.5, never below threshold 0.2
    generator = ReminderGenerator(adapter, soft, probe)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    images = [Image.new("RGB", (160 + 8 * i, 120), (40 * i % 255, 120, 200)) for i in range(batch)]
    enc = encode_batch(adapter, images, prompts)
    prompt_len = enc["input_ids"].shape[1]
    settings = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    injector = ReminderInjector(adapter.input_embeddings(), soft.to(adapter.device))
    check = RecomputeCheck(adapter, injector, probe.to(adapter.device), enc["pixel_values"], interval, prompt_len)

    def undefended():
        with torch.no_grad():
            return adapter.model.generate(**enc, **settings)

    def reminder():
        outs = generator.generate(images, prompts, interval=interval, threshold=0.2, mode="gated", **settings)
        assert not any(o.flagged for o in outs) and all(len(o.token_ids) == new_tokens for o in outs)
        return outs

    def reminder_nocheck():
        return generator.generate(images, prompts, mode="never", **settings)

    def recompute():
        with torch.no_grad():
            return adapter.model.generate(**enc, **settings, logits_processor=LogitsProcessorList([check]))

    timings = _timed_interleaved(
        {
            "undefended": undefended,
            "reminder": reminder,
            "reminder_nocheck": reminder_nocheck,
            "recompute": recompute,
        },
        device,
        repeats,
    )
    result = {
        "batch": batch,
        "new_tokens": new_tokens,
        "interval": interval,
        "image_tokens": image_tokens,
        "prompt_tokens": prompt_len,
        "checks_per_sample": (new_tokens + 1) // interval,
        "repeats": repeats,
        **{f"{name}_s": seconds for name, seconds in timings.items()},
    }
    for key in ("reminder", "reminder_nocheck", "recompute"):
        result[f"{key}_ratio"] = result[f"{key}_s"] / result["undefended_s"]
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smollm2-llava", choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--interval", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print only one JSON object per configuration")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    adapter, image_tokens = build_vlm(args.preset, args.device, getattr(torch, args.dtype))
    machine = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    )
    results = []
    for batch in args.batch:
        result = {
            "preset": args.preset,
            "device": args.device,
            "machine": machine,
            "dtype": args.dtype,
            "date": date.today().isoformat(),
            **run_config(adapter, image_tokens, batch, args.new_tokens, args.interval, args.repeats, args.device),
        }
        results.append(result)
        print(json.dumps(result), flush=True)
    if not args.json:
        print(_table(results), file=sys.stderr if args.json else sys.stdout)
    return results


def _table(results: list[dict]) -> str:
    head = "| preset | batch | new tokens | undefended s | reminder s (ratio) | recompute s (ratio) | our loop, no checks (ratio) |"
    lines = [head, "|" + "---|" * 7]
    for r in results:
        lines.append(
            f"| {r['preset']} | {r['batch']} | {r['new_tokens']} | {r['undefended_s']:.2f} | "
            f"{r['reminder_s']:.2f} ({r['reminder_ratio']:.3f}) | {r['recompute_s']:.2f} ({r['recompute_ratio']:.3f}) | "
            f"{r['reminder_nocheck_s']:.2f} ({r['reminder_nocheck_ratio']:.3f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
