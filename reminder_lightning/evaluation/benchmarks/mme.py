"""MME (Fu et al. 2023): two yes/no questions per image over 14 perception and cognition tasks."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from reminder_lightning.evaluation.benchmarks.base import Benchmark, with_suffix
from reminder_lightning.types import EvalSample

PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def parse_yes_no(text: str) -> str | None:
    """``"yes"`` / ``"no"`` from a free-text answer: its first word if that is yes/no, else the first
    standalone "yes" or "no" in it; None when neither occurs ("not", "none", "know" do not count)."""
    lowered = text.strip().lower()
    first = re.match(r"^[\W_]*(yes|no)\b", lowered)
    if first:
        return first.group(1)
    anywhere = re.search(r"\b(yes|no)\b", lowered)
    return anywhere.group(1) if anywhere else None


class MME(Benchmark):
    """MME's yes/no questions: every image has one question answered "Yes" and one answered "No".

    Layout (``MME_Benchmark_release_version``; a nested ``MME_Benchmark/`` folder is also found), one folder
    per task. ``artwork``, ``celebrity``, ``landmark``, ``posters``, ``scene``: ``<task>/images/<stem>.jpg``
    with ``<task>/questions_answers_YN/<stem>.txt``; the other tasks are flat: ``<task>/<stem>.jpg|png`` next
    to ``<task>/<stem>.txt``. Each ``.txt`` line is ``question<TAB>Yes|No``.

    Sample: ``prompt`` = ``judge_question`` = the question (it ends "Please answer yes or no.");
    ``reference`` = "Yes" / "No"; ``category`` = the task; ``harmful`` = False. ``n_per_category`` draws
    images, keeping both questions of each.

    Args:
        root: The MME folder holding one folder per task.
        tasks: Task folder names to load (None: each of the 14 tasks in ``PERCEPTION`` and ``COGNITION``
            that is present).
        n_per_category: Keep at most this many images per task, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall.
    """

    name = "mme"

    def __init__(
        self,
        root: str,
        tasks: list[str] | None = None,
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        super().__init__(root, n_per_category=n_per_category, seed=seed, limit=limit)
        self.tasks = list(tasks) if tasks is not None else None

    def layout_hint(self) -> str:
        return (
            "Expected MME_Benchmark_release_version/<task>/ with either images/ + questions_answers_YN/<stem>.txt "
            "or flat <stem>.jpg|png + <stem>.txt; each txt line 'question<TAB>Yes|No'."
        )

    def sampling_unit(self, sample: EvalSample) -> str:
        return sample.meta["image_id"]

    def task_root(self) -> Path:
        nested = self.root / "MME_Benchmark"
        return nested if nested.is_dir() and not (self.root / "existence").is_dir() else self.root

    def load_all(self) -> list[EvalSample]:
        root = self.task_root()
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and _question_files(p))
        tasks = self.tasks if self.tasks is not None else [t for t in PERCEPTION + COGNITION if t in found]
        missing = [t for t in tasks if t not in found]
        if missing:
            raise FileNotFoundError(
                f"{self.name}: task folders {missing} not found under {root}. {self.layout_hint()}"
            )
        samples = []
        for task in tasks:
            for qa in _question_files(root / task):
                image_stem = (
                    qa.parent.parent / "images" if qa.parent.name == "questions_answers_YN" else qa.parent
                ) / qa.stem
                image = with_suffix(image_stem)
                if image is None:
                    raise FileNotFoundError(
                        f"{qa}: no image {image_stem}.jpg/.png next to it. {self.layout_hint()}"
                    )
                lines = [line for line in qa.read_text(encoding="utf-8").splitlines() if line.strip()]
                for k, line in enumerate(lines):
                    question, tab, answer = line.rpartition("\t")
                    reference = answer.strip().capitalize()
                    if not tab or not question.strip() or reference not in ("Yes", "No"):
                        raise ValueError(
                            f"{qa} line {k + 1}: expected 'question<TAB>Yes|No', got {line!r}. Fix: restore the "
                            "published file."
                        )
                    samples.append(
                        EvalSample(
                            id=f"{task}/{image.name}/{k}",
                            benchmark=self.name,
                            prompt=question.strip(),
                            image=str(image.absolute()),
                            judge_question=question.strip(),
                            category=task,
                            harmful=False,
                            reference=reference,
                            meta={"image_id": f"{task}/{image.name}", "task": task},
                        )
                    )
        return samples

    def utility_metrics(self, samples: list[EvalSample], answers: list[str]) -> dict[str, float]:
        """MME's scores, on its published scale (percent).

        Per task: ``<task>/acc`` (questions right), ``<task>/acc_plus`` (images with every question right,
        over images with at least two questions in the selection) and ``<task>/score`` = acc + acc_plus.
        Overall: ``acc``, ``acc_plus`` (pooled), ``perception`` / ``cognition`` (sums of task scores, out of
        2000 / 800 on the full set) and ``unparsed`` (percent of answers with neither yes nor no; wrong).
        """
        if len(samples) != len(answers):
            raise ValueError(f"{self.name}: {len(samples)} samples but {len(answers)} answers; they must pair up.")
        if not samples:
            return {}
        right: dict[str, list[bool]] = defaultdict(list)
        per_image: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
        unparsed = 0
        for sample, answer in zip(samples, answers, strict=True):
            if sample.reference is None or "image_id" not in sample.meta:
                raise ValueError(
                    f"{self.name}: sample {sample.id!r} is not an MME sample (no reference/image_id)."
                )
            parsed = parse_yes_no(answer)
            unparsed += parsed is None
            ok = parsed == sample.reference.lower()
            right[sample.category].append(ok)
            per_image[sample.category][sample.meta["image_id"]].append(ok)
        metrics: dict[str, float] = {}
        all_ok, all_plus = [], []
        for task in sorted(right):
            plus = [all(v) for v in per_image[task].values() if len(v) >= 2]
            acc = 100.0 * sum(right[task]) / len(right[task])
            acc_plus = 100.0 * sum(plus) / len(plus) if plus else 0.0
            metrics.update({f"{task}/acc": acc, f"{task}/acc_plus": acc_plus, f"{task}/score": acc + acc_plus})
            all_ok += right[task]
            all_plus += plus
        metrics["acc"] = 100.0 * sum(all_ok) / len(all_ok)
        metrics["acc_plus"] = 100.0 * sum(all_plus) / len(all_plus) if all_plus else 0.0
        for group, names in (("perception", PERCEPTION), ("cognition", COGNITION)):
            metrics[group] = sum(metrics[f"{t}/score"] for t in names if t in right)
        metrics["unparsed"] = 100.0 * unparsed / len(answers)
        return metrics


def _question_files(task: Path) -> list[Path]:
    split = task / "questions_answers_YN"
    folder = split if split.is_dir() else task
    return sorted(folder.glob("*.txt"))
