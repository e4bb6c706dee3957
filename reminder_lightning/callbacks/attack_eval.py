"""Attack success rate during ``fit``: a fixed attacked set, answered with the reminder being trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from reminder_lightning.attacks.base import Attack
from reminder_lightning.callbacks.periodic_eval import generate_answers, reminder_generator, safety_scores
from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.evaluation.judges.base import Judge
from reminder_lightning.types import EvalSample


class AttackEvaluation(L.Callback):
    """Every ``every_n_epochs`` epochs (and at fit start with ``at_fit_start``), answer a fixed attacked set with
    the *current* soft prompt and probe and log ``attack/<name>/asr`` and ``attack/<name>/gate_rate``.

    The attacked set is built once, on rank zero at fit start: either ``attack`` applied to the first
    ``max_samples`` harmful prompts of ``benchmark`` (an optimising attack such as GCG is fitted there, against
    the undefended model: no reminder is in its prompts; attacks with ``set_model`` use the module's VLM
    instead of loading a second copy), or the JSONL that ``python -m reminder_lightning attack`` wrote
    (``attacked_path``). The attack's files go to ``output_dir``, so a resumed run reuses GCG's suffixes.
    Generation and scoring run on rank zero (others wait at a barrier); the history is kept in ``state_dict``.
    Works with any module that :class:`PeriodicSafetyEval` works with (:class:`SafetyReminderModule`). With a
    sharded model (FSDP, DeepSpeed ZeRO-3) rank zero cannot run it alone: build the set with the ``attack``
    command and pass ``attacked_path``.

    Args:
        attack: The attack to build the set with (with ``benchmark``).
        benchmark: The harmful prompts to attack.
        attacked_path: An attacked benchmark JSONL (``GenericBenchmark`` layout) instead of attack + benchmark.
        name: Metric name (default: the attack's name, or the JSONL file's stem).
        every_n_epochs: Evaluate after every this many training epochs.
        at_fit_start: Also evaluate before the first epoch (the initial reminder).
        max_samples: At most this many attacked prompts (the first harmful ones of the benchmark's selection).
        judge: The judge (default: the refusal-keyword judge).
        max_new_tokens: Tokens generated per answer.
        batch_size: Prompts per generation batch.
        output_dir: Folder for the attack's files (None: ``<trainer.default_root_dir>/attacks/<name>``).
    """

    def __init__(
        self,
        attack: Attack | None = None,
        benchmark: Benchmark | None = None,
        attacked_path: str | None = None,
        name: str | None = None,
        every_n_epochs: int = 1,
        at_fit_start: bool = False,
        max_samples: int = 16,
        judge: Judge | None = None,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        output_dir: str | None = None,
    ):
        if (attacked_path is None) == (attack is None or benchmark is None):
            raise ValueError(
                "AttackEvaluation needs either `attack` and `benchmark`, or `attacked_path`, not both."
            )
        if every_n_epochs < 1 or max_samples < 1:
            raise ValueError("every_n_epochs and max_samples must be >= 1")
        self.attack, self.benchmark, self.attacked_path = attack, benchmark, attacked_path
        self.name = name or (attack.name if attack is not None else Path(attacked_path).stem)
        self.every_n_epochs, self.at_fit_start, self.max_samples = every_n_epochs, at_fit_start, max_samples
        self.judge, self.max_new_tokens, self.batch_size = judge, max_new_tokens, batch_size
        self.output_dir = output_dir
        self.samples: list[EvalSample] | None = None
        self.builds = 0  # how often the attacked set was built (once per process)
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ state
    @property
    def state_key(self) -> str:
        """One state entry per attack name, so several attack callbacks can run (and resume) side by side."""
        return self._generate_state_key(name=self.name)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.samples is None:
            self.samples = self.build(
                pl_module, Path(self.output_dir or Path(trainer.default_root_dir) / "attacks")
            )
        trainer.strategy.barrier("attack-eval-build")
        if self.at_fit_start:
            self._run(trainer, pl_module, epoch=trainer.current_epoch - 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._run(trainer, pl_module, epoch=trainer.current_epoch)

    # ------------------------------------------------------------------ work
    def build(self, pl_module, output_dir: Path) -> list[EvalSample]:
        """The attacked samples (called once, on rank zero)."""
        self.builds += 1
        if self.attacked_path is not None:
            from reminder_lightning.evaluation.benchmarks.generic import GenericBenchmark

            return GenericBenchmark(self.attacked_path, name=self.name).load()[: self.max_samples]
        samples = [s for s in self.benchmark.load() if s.harmful][: self.max_samples]
        if not samples:
            raise ValueError(
                f"AttackEvaluation: benchmark {self.benchmark.name!r} has no harmful samples to attack."
            )
        if hasattr(self.attack, "set_model"):
            self.attack.set_model(pl_module.vlm)
        folder = output_dir / self.name
        self.attack.fit(samples, folder)
        return self.attack.apply(samples, folder)

    def _run(self, trainer, pl_module, epoch: int) -> None:
        if trainer.is_global_zero:
            metrics = self.evaluate(pl_module)
            self.history.append({"epoch": epoch, "step": trainer.global_step, **metrics})
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
            rank_zero_info(f"Attack eval ({self.name}): " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        trainer.strategy.barrier("attack-eval")

    @torch.no_grad()
    def evaluate(self, pl_module) -> dict[str, float]:
        if self.judge is None:
            from reminder_lightning.evaluation.judges.keyword import KeywordJudge

            self.judge = KeywordJudge()
        with reminder_generator(pl_module, self.max_new_tokens) as generator:
            outputs = generate_answers(generator, self.samples, self.batch_size, desc=f"{self.name} answers")
        verdicts = self.judge.judge([s.judge_question for s in self.samples], [o.text for o in outputs])
        scores = safety_scores(self.samples, outputs, verdicts)
        return {f"attack/{self.name}/{k}": scores[k] for k in ("asr", "gate_rate") if k in scores}
