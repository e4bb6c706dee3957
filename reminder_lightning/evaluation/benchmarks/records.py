"""Any training record source as a benchmark: the model answers its own training prompts.

DRO's refusal direction is fitted on what the undefended model does with its training prompts (the reference labels
its model's own answers); this lets ``test`` answer them, and
:class:`~reminder_lightning.data.judged_answers.JudgedAnswers` then reads the judged run back as two probe classes.
"""

from __future__ import annotations

from reminder_lightning.data.sources import RecordSource
from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.types import EvalSample


class RecordsBenchmark(Benchmark):
    """The prompts of a :class:`~reminder_lightning.data.sources.RecordSource` (SPA-VL's selection, VLSafe, local
    JSONL, ...), each harmful or benign as its record says; answers are not read.

    Args:
        source: The records (e.g. a fit config's ``data.init_args.harmful``).
        name: The benchmark's name in outputs and metric keys.
        n_per_category: Keep at most this many records per category, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall.
    """

    def __init__(
        self,
        source: RecordSource,
        name: str = "records",
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        super().__init__(".", n_per_category=n_per_category, seed=seed, limit=limit)  # the source checks its files
        if not name.strip():
            raise ValueError("name is empty. Fix: give the benchmark a short name, e.g. 'train_harmful'.")
        self.source, self.name = source, name

    def load_all(self) -> list[EvalSample]:
        return [
            EvalSample(
                id=r.id, benchmark=self.name, prompt=r.question, image=r.image, category=r.category,
                harmful=not r.is_safe, meta={"source": r.source},
            )
            for r in self.source.load()
        ]  # fmt: skip

    def layout_hint(self) -> str:
        return f"The records come from {self.source.name}; see its documentation for the files it reads."
