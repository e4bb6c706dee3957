"""The evaluation run: ``python -m reminder_lightning test --config configs/eval/<name>.yaml``.

:class:`BenchmarkDataModule` loads the chosen benchmarks (seeded subsamples) and hands out only the samples
that have no generation on disk yet; Lightning shards them over devices. :class:`EvaluationModule`
generates with the chosen defence and appends every answer to ``generations.rank<R>.jsonl`` as it goes.
At the end rank zero merges the answers, runs the judges (resumable too), computes the metrics and writes
the table, ``summary.json``, ``summary.md``, plots and (with a W&B logger) a sample table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from reminder_lightning.data.records import decode_image
from reminder_lightning.defences.base import DecodingSettings, Defence
from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.evaluation.judges.base import Judge
from reminder_lightning.evaluation.store import (
    JsonlAppender,
    check_same_run,
    done_keys,
    merge_generations,
    sample_key,
)
from reminder_lightning.types import EvalSample, GenerationRecord
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec


class BenchmarkDataModule(L.LightningDataModule):
    """The samples of one or more benchmarks that still need an answer.

    Args:
        benchmarks: Benchmark loaders (``class_path`` + ``init_args`` each).
        batch_size: Prompts per generation batch and device.
        output_dir: Where the run's results live; samples with a generation there are skipped (resume).
        num_workers: DataLoader workers.
        sort_by_length: Batch prompts of similar length together, longest first (every row of a batch is padded to
            its longest prompt, so one long task in a batch of short questions costs the whole batch its length;
            the longest batch first also shows an out-of-memory error at once). Results are written in benchmark
            order either way; two runs over the same samples batch them alike, so their answers stay comparable.
    """

    def __init__(
        self,
        benchmarks: list[Benchmark],
        batch_size: int = 8,
        output_dir: str = "runs/eval",
        num_workers: int = 0,
        sort_by_length: bool = True,
    ):
        super().__init__()
        if not benchmarks:
            raise ValueError("Give at least one benchmark (data.benchmarks).")
        self.benchmarks = benchmarks
        self.batch_size = batch_size
        self.output_dir = Path(output_dir)
        self.num_workers = num_workers
        self.sort_by_length = sort_by_length
        self.samples: list[EvalSample] | None = None
        self.per_benchmark: list[tuple[Benchmark, list[EvalSample]]] = []
        self.todo: list[EvalSample] = []

    def setup(self, stage: str | None = None) -> None:
        if self.samples is None:
            self.per_benchmark = [(bench, bench.load()) for bench in self.benchmarks]
            self.samples = [s for _, samples in self.per_benchmark for s in samples]
            keys = [sample_key(s.benchmark, s.id) for s in self.samples]
            if len(set(keys)) != len(keys):
                raise ValueError("Two benchmarks produce the same benchmark/id keys; give them distinct names.")
        done = done_keys(self.output_dir)
        self.todo = [s for s in self.samples if sample_key(s.benchmark, s.id) not in done]
        if self.sort_by_length:  # stable: equal lengths keep benchmark order
            self.todo.sort(key=lambda s: -len(s.prompt))
        rank_zero_info(
            f"Evaluation: {len(self.samples)} samples, {len(self.samples) - len(self.todo)} already "
            f"answered in {self.output_dir}, {len(self.todo)} to generate."
        )

    @property
    def order(self) -> list[str]:
        return [sample_key(s.benchmark, s.id) for s in self.samples or []]

    def test_dataloader(self) -> DataLoader:
        return DataLoader(
            self.todo, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers, collate_fn=list
        )


class EvaluationModule(L.LightningModule):
    """Generates answers with a defence, writes them as it goes, and judges and reports at the end.

    Args:
        vlm: The defended model.
        defence: The defence under test (``reminder_lightning.defences...``).
        judges: Judges to run (default: the refusal-keyword judge).
        decoding: Decoding settings, recorded with every number.
        output_dir: Results folder (use the same as ``data.output_dir``; linked by the CLI).
        judge_batch_size: Answers per judge call.
        wandb_samples: Rows of the W&B sample table (with a W&B logger).
    """

    def __init__(
        self,
        vlm: VLMSpec,
        defence: Defence,
        judges: list[Judge] | None = None,
        decoding: DecodingSettings | None = None,
        output_dir: str = "runs/eval",
        judge_batch_size: int = 16,
        wandb_samples: int = 64,
    ):
        super().__init__()
        self.vlm_spec = vlm if isinstance(vlm, VLMSpec) else VLMSpec(**vlm)
        self.defence = defence
        self.judges = judges
        self.decoding = (
            DecodingSettings(**decoding) if isinstance(decoding, dict) else (decoding or DecodingSettings())
        )
        self.output_dir = Path(output_dir)
        self.judge_batch_size = judge_batch_size
        self.wandb_samples = wandb_samples
        self.adapter: VLMAdapter | None = None
        self._writer: JsonlAppender | None = None
        self.summary: list[dict[str, Any]] | None = None
        self._started = time.time()

    def configure_model(self) -> None:
        if self.adapter is not None:
            return
        adapter = VLMAdapter.load(self.vlm_spec)
        adapter.requires_grad_(False)
        self.adapter = adapter

    def on_test_start(self) -> None:
        self.adapter.eval()
        self.defence.setup(self.adapter)
        check_same_run(self.output_dir, self.defence.describe(), self.decoding.as_dict())
        self._writer = JsonlAppender(self.output_dir / f"generations.rank{self.global_rank}.jsonl")

    def test_step(self, batch: list[EvalSample], batch_idx: int) -> None:
        images = [None if s.image is None else decode_image(s.image, s.benchmark, s.id) for s in batch]
        started = time.perf_counter()
        outputs = self.defence.generate(images, [s.prompt for s in batch], self.decoding)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / max(len(batch), 1)
        described, decoding = self.defence.describe(), self.decoding.as_dict()
        for sample, out in zip(batch, outputs, strict=True):
            self._writer.write(GenerationRecord.from_output(sample, out, described, decoding, seconds).to_json())

    def on_test_epoch_end(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.trainer.strategy.barrier("evaluation-generations")
        if self.trainer.is_global_zero:
            self.finalize(self.trainer.datamodule.order if self.trainer.datamodule is not None else None)

    def finalize(self, order: list[str] | None = None) -> list[dict[str, Any]]:
        """Merge, judge, score and report (rank zero). Safe to call again: judged answers are reused."""
        from reminder_lightning.evaluation.judging import judge_generations, score
        from reminder_lightning.evaluation.report import log_wandb_table, save_plots, summary_table, write_summary

        check_same_run(self.output_dir, self.defence.describe(), self.decoding.as_dict())
        rows = merge_generations(self.output_dir, order)
        if order is not None:
            missing = set(order) - {r["key"] for r in rows}
            if missing:
                raise RuntimeError(
                    f"{len(missing)} samples have no generation in {self.output_dir}; rerun to finish."
                )
            keep = set(order)
            rows = [r for r in rows if r["key"] in keep]
        judges = self.judges if self.judges is not None else [_default_judge()]
        verdicts = judge_generations(rows, judges, self.output_dir, self.judge_batch_size)
        summary = score(rows, verdicts)
        info = {
            "model": self.vlm_spec.name_or_path,
            "defence": self.defence.describe(),
            "decoding": self.decoding.as_dict(),
            "judges": [j.name for j in judges],
            "samples": len(rows),
            "date": time.strftime("%Y-%m-%d"),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        }
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        info["utility"] = utility_scores(
            datamodule.per_benchmark if datamodule is not None else [], rows, self.output_dir
        )
        write_summary(self.output_dir, summary, info)
        plots = save_plots(self.output_dir, summary, rows)
        table = summary_table(summary)
        print("\n" + table + f"\n\nWritten to {self.output_dir}: summary.json, summary.md, {len(plots)} plot(s).")
        for row in summary:
            for metric in ("asr", "over_refusal", "gate_rate"):
                if row[metric] is not None:
                    for logger in self.loggers:
                        logger.log_metrics({f"test/{row['benchmark']}/{row['judge']}/{metric}": row[metric]})
        images = {
            r["key"]: decode_image(r["image"], r["benchmark"], r["id"])
            for r in rows[: self.wandb_samples]
            if isinstance(r["image"], str) and r["image"] != "<bytes>"
        }
        for logger in self.loggers:
            log_wandb_table(logger, rows, verdicts, self.wandb_samples, images)
        (self.output_dir / "run.json").write_text(json.dumps(info, indent=2, default=str))
        self.summary = summary
        return summary


def utility_scores(
    per_benchmark: list[tuple[Benchmark, list[EvalSample]]],
    rows: list[dict[str, Any]],
    output_dir: Path | None = None,
) -> dict:
    """``{benchmark name: utility_metrics(...)}`` for benchmarks that define utility scores (MME, MMBench, ...);
    with ``output_dir``, benchmarks graded outside (MM-Vet) also write their answers there."""
    answers = {r["key"]: r["text"] for r in rows}
    out = {}
    for bench, samples in per_benchmark:
        keys = [sample_key(s.benchmark, s.id) for s in samples]
        if samples and all(k in answers for k in keys):
            texts = [answers[k] for k in keys]
            scores = bench.utility_metrics(samples, texts)
            if output_dir is not None:
                bench.export(samples, texts, output_dir)
            if scores:
                out[bench.name] = scores
    return out


def _default_judge() -> Judge:
    from reminder_lightning.evaluation.judges.keyword import KeywordJudge

    return KeywordJudge()
