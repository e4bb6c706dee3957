"""Evaluation throughput: answers per second of the ``test`` command, per defence, batch size and length sorting.

Each configuration is one run of the user's ``test`` command, in-process, on the same prompts: a mix of short
questions and long code tasks (``--long-share`` of them, like the demo's HumanEval share), each with an image,
greedy, at most ``--new-tokens`` per answer (answers may end earlier: tokens/s is reported beside answers/s). Defences: ``none``; the Safety Reminder ``gated`` (a random reminder
whose probe never flags, so every check runs and none fires: the cost of the gate on benign traffic) and
``always`` (the reminder kept at every check). Batch 1, and larger batches with and without ``sort_by_length``.

Generation seconds are what the ``test`` command itself records per answer (the defence's batch wall time); the
command's whole wall time (model load, writing, judging) is reported beside them. Ratios come from the same run:
each defence against ``none`` at the same batch and sorting, and each sorted run against its unsorted twin. One JSON
object per configuration with ``--json``, a table otherwise::

    python benchmarks/evaluation_throughput.py                  # CPU: the demo's SmolLM2-135M (real weights)
    python benchmarks/evaluation_throughput.py --model shapes:llava-1.5-7b --device cuda --dtype bfloat16 \
        --prompts 1000 --batch 1 16 32 --new-tokens 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from _vlm import machine_name
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFENCES = ("none", "gated", "always")
_CODE = (
    "Complete the following Python function. Keep the signature and write only the body.\n\n"
    "def summarise_orders(orders: list[dict], currency: str = 'EUR') -> dict:\n"
    '    """Return the total, the mean and the largest order value of ``orders`` in ``currency``.\n\n'
)


def _prompts(folder: Path, n: int, long_share: float) -> Path:
    """``n`` prompts with images as a GenericBenchmark file: every ``1/long_share``-th a long code task."""
    folder.mkdir(parents=True, exist_ok=True)
    every = round(1 / long_share) if long_share > 0 else 0
    rows = []
    for k in range(n):
        Image.new("RGB", (96 + 8 * (k % 5), 96), (37 * k % 255, 120, 200)).save(folder / f"{k}.png")
        if every and k % every == every - 1:
            doc = "".join(
                f"    Order {j}: each order has an 'amount' in cents and a 'currency' code.\n" for j in range(24)
            )
            question = _CODE + doc + '    """\n'
        else:
            question = f"What is shown in picture {k}? Describe the colours and shapes in two sentences."
        rows.append({"id": f"p{k}", "question": question, "image": f"{k}.png"})
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _artifact(model: str, dtype: str, device: str, path: Path) -> Path:
    """A random reminder for ``model`` whose probe never flags (P(safe) ~ 1 against threshold 0.5)."""
    from reminder_lightning.reminder import SafetyProbe, save_reminder
    from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec

    adapter = VLMAdapter.load(VLMSpec(name_or_path=model, dtype=dtype), device=device)
    embeddings = adapter.input_embeddings().weight
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(4, adapter.hidden_size, generator=generator) * embeddings.float().std().item()
    probe = SafetyProbe(adapter.hidden_size, 2)
    probe.intercept.fill_(10.0)
    metadata = {
        "interval": 16,
        "threshold": 0.5,
        "model_type": adapter.inputs.config.model_type,
        "base_model": model,
    }
    del adapter
    return save_reminder(path, vectors, probe, metadata)


def _run_test(args, prompts: Path, artifact: Path, defence: str, batch: int, sort: bool, out: Path) -> dict:
    from reminder_lightning.cli import main as cli
    from reminder_lightning.evaluation.store import read_jsonl

    accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
    defence_args = ["--model.defence=reminder_lightning.defences.none.NoDefence"]
    if defence != "none":
        defence_args = [
            "--model.defence=reminder_lightning.defences.safety_reminder.SafetyReminderDefence",
            f"--model.defence.artifact={artifact}",
            f"--model.defence.mode={defence}",
        ]
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the command's own summary table: stdout keeps only the JSON
        cli(["test", f"--model.vlm.name_or_path={args.model}", f"--model.vlm.dtype={args.dtype}", *defence_args,
             f"--model.output_dir={out}", f"--model.decoding.max_new_tokens={args.new_tokens}",
             f"--trainer.accelerator={accelerator}", "--trainer.devices=1", "--trainer.logger=false",
             "--trainer.enable_progress_bar=false", f"--data.batch_size={batch}", f"--data.sort_by_length={sort}",
             "--data.benchmarks=[{class_path: reminder_lightning.evaluation.benchmarks.generic.GenericBenchmark, "
             f"init_args: {{path: {prompts}, name: throughput, harmful: false}}}}]"])  # fmt: skip
    wall = time.perf_counter() - started
    rows = read_jsonl(out / "generations.jsonl")
    generation = sum(r["seconds"] for r in rows)
    return {
        "defence": defence,
        "batch": batch,
        "sorted": sort,
        "answers": len(rows),
        "tokens_per_answer": sum(len(r["token_ids"]) for r in rows) / max(len(rows), 1),
        "generation_s": round(generation, 3),
        "answers_per_s": round(len(rows) / generation, 3),
        "tokens_per_s": round(sum(len(r["token_ids"]) for r in rows) / generation, 1),
        "command_wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo:smollm2-llava", help="name_or_path (tiny:llava, shapes:...)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--long-share", type=float, default=0.2, help="share of long code-task prompts")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--defences", nargs="+", default=list(DEFENCES), choices=DEFENCES)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--work-dir", default=None, help="where prompts and outputs go (default: a temporary folder)"
    )
    parser.add_argument("--json", action="store_true", help="print only one JSON object per configuration")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="throughput-"))
    prompts = _prompts(work / "data", args.prompts, args.long_share)
    artifact = _artifact(args.model, args.dtype, args.device, work / "reminder.safetensors")
    header = {
        "model": args.model,
        "device": args.device,
        "machine": machine_name(args.device),
        "dtype": args.dtype,
        "torch": torch.__version__,
        "date": date.today().isoformat(),
        "prompts": args.prompts,
        "long_share": args.long_share,
        "new_tokens": args.new_tokens,
    }
    runs = [(b, s) for b in args.batch for s in ((False,) if b == 1 else (False, True))]
    results = []
    for defence in args.defences:
        for batch, sort in runs:
            out = work / "eval" / f"{defence}-b{batch}-{'sorted' if sort else 'unsorted'}"
            results.append({**header, **_run_test(args, prompts, artifact, defence, batch, sort, out)})
    by_key = {(r["defence"], r["batch"], r["sorted"]): r for r in results}
    for r in results:
        none = by_key.get(("none", r["batch"], r["sorted"]))
        r["ratio_vs_none"] = round(r["generation_s"] / none["generation_s"], 3) if none else None
        unsorted = by_key.get((r["defence"], r["batch"], False))
        r["ratio_vs_unsorted"] = round(r["generation_s"] / unsorted["generation_s"], 3) if r["sorted"] else None
        print(json.dumps(r), flush=True)
    if not args.json:
        print(_table(results))
    return results


def _table(results: list[dict]) -> str:
    r = results[0]
    lines = [
        f"{r['model']}, {r['machine']}, {r['dtype']}, {r['prompts']} prompts "
        f"({r['long_share']:.0%} long), {r['new_tokens']} new tokens:",
        "",
        "| defence | batch | sorted | generation s | answers/s | tokens/s | x none | x unsorted | command wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = "-" if r["ratio_vs_unsorted"] is None else f"{r['ratio_vs_unsorted']:.3f}"
        lines.append(
            f"| {r['defence']} | {r['batch']} | {'yes' if r['sorted'] else 'no'} | {r['generation_s']:.2f} | "
            f"{r['answers_per_s']:.2f} | {r['tokens_per_s']:.1f} | {r['ratio_vs_none']:.3f} | {ratio} | {r['command_wall_s']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
