"""``python -m reminder_lightning attack --config configs/attacks/<name>.yaml``: build an attacked benchmark.

Loads a benchmark, lets the attack fit (optimising attacks) and apply itself, and writes the attacked
samples as a JSONL file in :class:`GenericBenchmark` layout (``id, question, image, category,
judge_question``) plus their images, ready for ``python -m reminder_lightning test``.
"""

from __future__ import annotations

from pathlib import Path

from reminder_lightning.attacks.base import Attack
from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.evaluation.store import write_jsonl
from reminder_lightning.types import EvalSample


def run_attack(attack: Attack, benchmark: Benchmark, output_dir: str = "runs/attacks") -> Path:
    """Attack every sample of ``benchmark`` and write ``<output_dir>/<benchmark>+<attack>.jsonl``.

    Args:
        attack: The attack (``reminder_lightning.attacks...``).
        benchmark: The harmful prompts to attack.
        output_dir: Folder for the JSONL file and the images.
    """
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = benchmark.load()
    attack.fit(samples, out_dir)
    attacked = attack.apply(samples, out_dir)
    name = attacked[0].benchmark if attacked else f"{benchmark.name}+{attack.name}"
    path = out_dir / f"{name.replace('/', '_')}.jsonl"
    for s in attacked:
        if isinstance(s.image, bytes):
            raise ValueError(f"{attack.name} produced image bytes for {s.id}; attacks must write image files.")
    write_samples(attacked, path)
    print(f"{len(attacked)} attacked samples written to {path}")
    return path


def write_samples(samples: list[EvalSample], path: Path) -> Path:
    """Samples as a :class:`GenericBenchmark` JSONL (``id, question, image, category, judge_question``)."""
    fields = ("id", "prompt", "image", "category", "judge_question")
    write_jsonl(path, ({"question" if k == "prompt" else k: getattr(s, k) for k in fields} for s in samples))
    return path


def main(args: list[str] | None = None) -> Path:
    from jsonargparse import auto_cli

    return auto_cli(run_attack, args=args, as_positional=False)
