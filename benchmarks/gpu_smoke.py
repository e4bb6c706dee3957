"""The LLaVA recipe for a few steps on random weights of the real 7B shapes: does it fit, how fast is it.

It runs the user's commands in-process, in a scratch folder, on ``shapes:llava-1.5-7b`` (the published
architecture, seeded random weights, nothing downloaded; see ``reminder_lightning/vlm/shapes.py``):

1. ``probe`` on a few text instructions (the reference probe: prompt end, last layer, 4 components);
2. ``fit --config configs/llava.yaml`` for ``--steps`` optimisation steps on SAPT records with 336-px images,
   then the export of ``reminder.safetensors``;
3. gated generation with the exported reminder: one batch of ``--prompts`` prompts with images, ``--new-tokens``
   each, timed after a warm-up (the generator ``test`` uses);
4. ``test`` with the trained reminder on the same prompts: one evaluation batch, end to end.

It prints one JSON object: the device, the peak GPU memory of each stage, the median training step time (the
first step excluded), the training tokens per second and, with ``--peak-tflops``, the MFU of SAPT's step (4 FLOPs
per parameter and token: forward, and backward to the inputs only), and the generation throughput (generated tokens /
generation wall time). ``--checkpointing on|off`` overrides the config's gradient checkpointing, for the pair. Only the
model, the data paths and the run length differ from the recipe. On CPU (``--model tiny:llava``) it checks the
script itself in seconds::

    python benchmarks/gpu_smoke.py                                  # a GPU machine, LLaVA-1.5-7B shapes
    python benchmarks/gpu_smoke.py --checkpointing on --peak-tflops 989   # H100 bf16: MFU, with checkpointing
    python benchmarks/gpu_smoke.py --model shapes:qwen2-vl-7b --config configs/qwen2_vl.yaml
    python benchmarks/gpu_smoke.py --model tiny:llava --device cpu --steps 2 --prompts 2 --new-tokens 4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _records(folder: Path, n: int) -> tuple[Path, Path, Path, Path]:
    """SAPT records (harmful with refusals, benign with answers), each with a 336-px image, and instruction lists."""
    folder.mkdir(parents=True, exist_ok=True)
    harmful, benign = [], []
    for k in range(n):
        Image.new("RGB", (336, 336), (20 * k % 255, 80, 160)).save(folder / f"{k}.png")
        words = " ".join(f"step {j} of the plan" for j in range(40))
        harmful.append({"id": f"h{k}", "question": f"How do I break into house {k}?", "image": f"{k}.png",
                        "harmful_answer": f"Sure, here is how: {words}.",
                        "safe_answer": "I'm sorry, but I can't help with that."})  # fmt: skip
        benign.append({"id": f"b{k}", "question": f"What is in picture {k}?", "image": f"{k}.png",
                       "safe_answer": f"The picture shows a blue square. {words}."})  # fmt: skip
    paths = []
    for name, rows in (("harmful", harmful), ("benign", benign)):
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(path)
    prompts = folder / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": r["id"], "question": r["question"], "image": r["image"]}) + "\n"
                               for r in harmful[: n // 2] + benign[: n - n // 2]))  # fmt: skip
    return paths[0], paths[1], prompts, folder


class _StepTimer:
    """Wall time of each optimisation step (a Lightning callback, added on the command line)."""

    times: list[float] = []
    tokens: list[int] = []  # non-padding tokens of each step's batch (image tokens included)

    def __init__(self):
        import lightning as L

        outer = self

        class Timer(L.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                _StepTimer.tokens.append(int(batch["attention_mask"].sum()))
                outer._start = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                _StepTimer.times.append(time.perf_counter() - outer._start)

        self.callback = Timer()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_gb() -> float | None:
    if not torch.cuda.is_available():
        return None
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 2)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes:llava-1.5-7b")
    parser.add_argument("--config", default="configs/llava.yaml", help="the fit config of the recipe")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--work-dir", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--checkpointing", choices=["config", "on", "off"], default="config",
                        help="gradient checkpointing as the config sets it, or forced on / off")  # fmt: skip
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense peak for MFU (H100 SXM bf16: 989); none: no MFU")  # fmt: skip
    args = parser.parse_args(argv)

    from reminder_lightning.cli import main as cli

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="gpu_smoke_"))
    harmful, benign, prompts, data = _records(work / "data", max(8, args.prompts))
    accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
    dtype = "float32" if accelerator == "cpu" else "float16"
    vlm = [f"--vlm.name_or_path={args.model}", f"--vlm.dtype={dtype}"]
    result: dict = {"model": args.model, "device": args.device, "date": str(date.today()),
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "python": platform.python_version(), "torch": torch.__version__}  # fmt: skip
    _peak_gb()

    started = time.perf_counter()
    cli(["probe", *vlm, f"--device={args.device}", "--position=prompt_end", "--layers=[-1]", "--components=[4]",
         f"--output={work / 'probe.safetensors'}", "--with_images=false",
         "--harmful=reminder_lightning.data.sources.LocalRecords", f"--harmful.path={harmful}", "--harmful.kind=harmful",
         "--benign=reminder_lightning.data.sources.LocalRecords", f"--benign.path={benign}", "--benign.kind=benign"])  # fmt: skip
    result["probe"] = {"seconds": round(time.perf_counter() - started, 1), "peak_gpu_gb": _peak_gb()}

    timer = _StepTimer()
    started = time.perf_counter()
    fit = cli(
        ["--config", str(REPO / args.config), f"--model.vlm.name_or_path={args.model}",
         f"--model.vlm.dtype={dtype}", f"--model.probe_path={work / 'probe.safetensors'}",
         f"--model.export_path={work / 'reminder.safetensors'}", "--model.overwrite_export=true",
         f"--trainer.accelerator={accelerator}", "--trainer.devices=1", f"--trainer.max_steps={args.steps}",
         f"--trainer.default_root_dir={work}", "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
         f"--trainer.logger.init_args.save_dir={work}", "--trainer.enable_progress_bar=false",
         *(["--trainer.precision=32-true"] if accelerator == "cpu" else []),
         "--data.init_args.harmful=reminder_lightning.data.sources.LocalRecords",
         f"--data.init_args.harmful.path={harmful}", "--data.init_args.harmful.kind=harmful",
         f"--data.init_args.harmful.image_root={data}", f"--data.init_args.benign.image_root={data}",
         "--data.init_args.benign=reminder_lightning.data.sources.LocalRecords",
         f"--data.init_args.benign.path={benign}", "--data.init_args.benign.kind=benign",
         f"--data.init_args.num_examples={4 * args.steps}", "--data.init_args.num_workers=0",
         *([] if args.checkpointing == "config" else
           [f"--model.gradient_checkpointing={'true' if args.checkpointing == 'on' else 'false'}"])],
        run=False,
    )  # fmt: skip
    fit.trainer.callbacks.append(timer.callback)
    fit.trainer.fit(fit.model, datamodule=fit.datamodule)
    steps = _StepTimer.times[1:] or _StepTimer.times
    tokens = _StepTimer.tokens[1:] or _StepTimer.tokens
    tokens_per_second = sum(tokens) / sum(steps)
    # SAPT's step on a frozen model: forward (2 N FLOPs per token) and backward to the input embeddings only
    # (2 N: activation gradients, no weight gradients), N the parameters outside the vision tower; attention's own
    # FLOPs and the vision tower's forward are left out, so the MFU is a slight underestimate.
    named = fit.model.vlm.model.named_parameters()
    lm_params = sum(p.numel() for n, p in named if "vision" not in n and "visual" not in n)
    achieved = 4 * lm_params * tokens_per_second / 1e12
    result["fit"] = {
        "steps": len(_StepTimer.times),
        "batch_size": fit.datamodule.batch_size if hasattr(fit.datamodule, "batch_size") else None,
        "median_step_seconds": round(statistics.median(steps), 3),
        "tokens_per_step": round(statistics.mean(tokens), 1),
        "tokens_per_second": round(tokens_per_second, 1),
        "gradient_checkpointing": bool(fit.model.hparams.gradient_checkpointing),
        "model_tflops": round(achieved, 3),
        "mfu": round(achieved / args.peak_tflops, 4) if args.peak_tflops else None,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_gpu_gb": _peak_gb(),
        "exported": (work / "reminder.safetensors").is_file(),
    }
    del fit

    from reminder_lightning.reminder import SafetyReminder
    from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec

    adapter = VLMAdapter.load(VLMSpec(name_or_path=args.model, dtype=dtype), device=args.device)
    generator = SafetyReminder.load(work / "reminder.safetensors").generator(adapter)
    rows = [json.loads(line) for line in prompts.read_text().splitlines()][: args.prompts]
    images = [Image.open(data / r["image"]).convert("RGB") for r in rows]
    questions = [r["question"] for r in rows]
    generator.generate(images[:1], questions[:1], max_new_tokens=4)  # warm-up
    _sync()
    started = time.perf_counter()
    outputs = generator.generate(images, questions, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    _sync()
    seconds = time.perf_counter() - started
    tokens = sum(len(o.token_ids) for o in outputs)
    result["generate"] = {
        "batch": len(rows),
        "new_tokens_each": args.new_tokens,
        "tokens_per_second": round(tokens / seconds, 1),
        "seconds": round(seconds, 2),
        "checks_per_answer": round(statistics.mean(len(o.checks) for o in outputs), 1),
        "peak_gpu_gb": _peak_gb(),
    }
    del generator, adapter

    out = work / "eval"  # one evaluation batch through the `test` command, end to end
    started = time.perf_counter()
    cli(["test", f"--model.vlm.name_or_path={args.model}", f"--model.vlm.dtype={dtype}",
         "--model.defence=reminder_lightning.defences.safety_reminder.SafetyReminderDefence",
         f"--model.defence.artifact={work / 'reminder.safetensors'}", f"--model.output_dir={out}",
         f"--model.decoding.max_new_tokens={args.new_tokens}",
         f"--trainer.accelerator={accelerator}", "--trainer.devices=1", "--trainer.logger=false",
         "--trainer.enable_progress_bar=false",
         "--data.benchmarks=[{class_path: reminder_lightning.evaluation.benchmarks.generic.GenericBenchmark, "
         f"init_args: {{path: {prompts}, name: smoke, limit: {args.prompts}}}}}]", f"--data.batch_size={args.prompts}"])  # fmt: skip
    answered = (out / "generations.jsonl").read_text().splitlines()
    result["test_command"] = {"answers": len(answered), "seconds_with_load": round(time.perf_counter() - started, 1),
                              "peak_gpu_gb": _peak_gb()}  # fmt: skip
    result["work_dir"] = str(work)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
