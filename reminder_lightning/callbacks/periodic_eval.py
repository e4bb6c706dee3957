"""Periodic safety evaluation during ``fit``: a small fixed subset of benchmarks with the current reminder."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from reminder_lightning.data.records import decode_image
from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.evaluation.judges.base import Judge
from reminder_lightning.evaluation.metrics import AttackSuccessRate, GateRate, RefusalRate
from reminder_lightning.types import EvalSample, Verdict


@contextmanager
def reminder_generator(pl_module, max_new_tokens: int) -> Iterator[Any]:
    """A :class:`ReminderGenerator` with the module's *current* soft prompt and probe (``gated`` with a probe,
    else ``always``; the module's schedule). The module's own injection hooks are
    detached meanwhile (the generator attaches its own) and its train/eval mode is restored afterwards."""
    from reminder_lightning.reminder.generation import ReminderGenerationConfig, ReminderGenerator
    from reminder_lightning.reminder.schedule import GateMode

    mode = GateMode.gated if pl_module.probe is not None else GateMode.always
    config = ReminderGenerationConfig(
        max_new_tokens=max_new_tokens, schedule=pl_module.schedule.replace(mode=mode)
    )
    injector, was_training = pl_module.injector, pl_module.training
    injector.detach()
    try:
        yield ReminderGenerator(pl_module.vlm, pl_module.soft_prompt, pl_module.probe, config)
    finally:
        injector.attach()
        pl_module.train(was_training)


def generate_answers(generator, samples: list[EvalSample], batch_size: int, desc: str = "answers") -> list[Any]:
    """``generator.generate`` over ``samples`` in batches (images decoded from paths or bytes), with a bar over
    the batches (generation inside ``fit`` takes minutes at 7B)."""
    from tqdm.auto import tqdm

    outputs = []
    for start in tqdm(range(0, len(samples), batch_size), desc=desc, unit="batch", leave=False):
        chunk = samples[start : start + batch_size]
        images = [None if s.image is None else decode_image(s.image, s.benchmark, s.id) for s in chunk]
        outputs += generator.generate(images, [s.prompt for s in chunk])
    return outputs


def safety_scores(samples: list[EvalSample], outputs: list[Any], verdicts: list[Verdict]) -> dict[str, float]:
    """``gate_rate`` over all samples, ``asr`` over harmful ones (decided verdicts only), ``over_refusal`` over
    benign ones; a score without samples (or only undecided verdicts) is left out. Computed locally: the
    callbacks evaluate on rank zero while the other ranks wait at a barrier."""
    local = {"sync_on_compute": False}
    asr, refusal, gate = AttackSuccessRate(**local), RefusalRate(**local), GateRate(**local)
    harmful = [i for i, s in enumerate(samples) if s.harmful]
    benign = [i for i, s in enumerate(samples) if not s.harmful]
    gate.update(torch.tensor([o.flagged for o in outputs]))
    out = {"gate_rate": float(gate.compute()["overall"])}
    if harmful:
        asr.update([verdicts[i].unsafe for i in harmful])
        out["asr"] = float(asr.compute()["overall"])
    if benign:
        refusal.update(torch.tensor([verdicts[i].refusal for i in benign]))
        out["over_refusal"] = float(refusal.compute()["overall"])
    return {k: v for k, v in out.items() if not math.isnan(v)}


class PeriodicSafetyEval(L.Callback):
    """Every ``every_n_epochs`` epochs, generate on a fixed subset with the reminder being trained and log
    ``val/<benchmark>/asr``, ``val/<benchmark>/gate_rate`` and ``val/<benchmark>/over_refusal``.

    Runs on rank zero (others wait at a barrier); its history is kept in ``state_dict`` so a resumed run
    goes on from where it was. Works with any module that has ``vlm``, ``soft_prompt``, ``probe`` and
    ``schedule`` (:class:`SafetyReminderModule`).

    Args:
        benchmarks: Benchmarks to sample from (their own ``n_per_category`` / ``limit`` / ``seed`` apply).
        every_n_epochs: Run after every this many training epochs.
        max_samples: At most this many samples per benchmark (the first ones of the seeded selection).
        judge: The judge (default: the refusal-keyword judge).
        max_new_tokens: Tokens generated per answer.
        batch_size: Prompts per generation batch.
        log_samples: Rows of the sample table logged per benchmark (W&B loggers only).
    """

    def __init__(
        self,
        benchmarks: list[Benchmark],
        every_n_epochs: int = 1,
        max_samples: int = 16,
        judge: Judge | None = None,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        log_samples: int = 8,
    ):
        if every_n_epochs < 1 or max_samples < 1:
            raise ValueError("every_n_epochs and max_samples must be >= 1")
        self.benchmarks = benchmarks
        self.every_n_epochs = every_n_epochs
        self.max_samples = max_samples
        self.judge = judge
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.log_samples = log_samples
        self.samples: dict[str, list[EvalSample]] | None = None
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.samples is None:
            self.samples = {}
            for bench in self.benchmarks:  # one entry per sample benchmark name (MM-SafetyBench: per image type)
                for sample in bench.load():
                    group = self.samples.setdefault(sample.benchmark, [])
                    if len(group) < self.max_samples:
                        group.append(sample)
        if self.judge is None:
            from reminder_lightning.evaluation.judges.keyword import KeywordJudge

            self.judge = KeywordJudge()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        if trainer.is_global_zero:
            metrics = self.evaluate(pl_module)
            self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **metrics})
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
            rank_zero_info("Periodic safety eval: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        trainer.strategy.barrier("periodic-safety-eval")

    # ------------------------------------------------------------------ work
    @torch.no_grad()
    def evaluate(self, pl_module) -> dict[str, float]:
        metrics: dict[str, float] = {}
        with reminder_generator(pl_module, self.max_new_tokens) as generator:
            for name, samples in self.samples.items():
                metrics.update(self._evaluate_one(generator, name, samples, pl_module))
        return metrics

    def _evaluate_one(self, generator, name: str, samples: list[EvalSample], pl_module) -> dict[str, float]:
        outputs = generate_answers(generator, samples, self.batch_size, desc=f"{type(self).__name__} answers")
        verdicts = self.judge.judge([s.judge_question for s in samples], [o.text for o in outputs])
        out = {f"val/{name}/{k}": v for k, v in safety_scores(samples, outputs, verdicts).items()}
        self._log_table(pl_module, name, samples, outputs, verdicts)
        return out

    def _log_table(self, pl_module, name, samples, outputs, verdicts) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in pl_module.loggers:
            if isinstance(logger, WandbLogger):
                rows = [
                    [s.id, s.judge_question, o.text, o.flagged, v.unsafe, v.refusal]
                    for s, o, v in list(zip(samples, outputs, verdicts, strict=True))[: self.log_samples]
                ]
                logger.log_table(
                    key=f"val/{name}/samples",
                    columns=["id", "question", "answer", "flagged", "unsafe", "refusal"],
                    data=rows,
                )
