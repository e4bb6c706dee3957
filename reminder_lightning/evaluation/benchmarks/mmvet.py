"""MM-Vet (Yu et al., ICML 2024): open-ended questions over six capabilities, graded by its GPT-4 grader."""

from __future__ import annotations

import json
from pathlib import Path

from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.types import EvalSample


def export_answers(samples: list[EvalSample], answers: list[str], path: str | Path) -> Path:
    """Write answers in the format MM-Vet's grader reads (``{"v1_0": "answer text", ...}``, JSON).

    The file is what ``mm-vet_evaluator.py`` (``results/<model>.json``) and the online evaluator take.

    Args:
        samples: MM-Vet samples, as loaded by :class:`MMVet`.
        answers: The model's answer to each sample, in the same order.
        path: The JSON file to write (parent folders are created).

    Returns:
        The written path.
    """
    if len(samples) != len(answers):
        raise ValueError(f"export_answers: {len(samples)} samples but {len(answers)} answers; they must pair up.")
    results: dict[str, str] = {}
    for sample, answer in zip(samples, answers, strict=True):
        key = sample.meta.get("mmvet_key")
        if key is None:
            raise ValueError(
                f"export_answers: sample {sample.id!r} of {sample.benchmark!r} has no meta['mmvet_key']. "
                "Fix: pass only samples loaded by MMVet."
            )
        results[key] = answer
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=4, ensure_ascii=False), encoding="utf-8")
    return out


class MMVet(Benchmark):
    """MM-Vet v1: 218 questions, each with an image, a reference answer and its capabilities.

    Layout (``mm-vet.zip`` of ``github.com/yuweihao/MM-Vet``): ``<root>/mm-vet.json``, an object keyed
    ``v1_0`` ... ``v1_217`` with ``imagename``, ``question``, ``answer`` (``<AND>`` / ``<OR>`` for
    multi-part answers) and ``capability`` (a list: rec, ocr, know, gen, spat, math); images in
    ``<root>/images/<imagename>``.

    Sample: ``prompt`` = ``judge_question`` = ``question``; ``reference`` = ``answer``; ``harmful`` = False;
    ``category`` = the capabilities joined by ``,`` (the grader's capability-integration groups); the key
    goes to ``meta["mmvet_key"]`` for :func:`export_answers`. Scoring needs the GPT-4 grader, so
    :meth:`utility_metrics` returns nothing; ``test`` writes the answers for it to ``<output_dir>/mmvet_answers.json``.

    Args:
        root: The unzipped ``mm-vet`` folder (holding ``mm-vet.json`` and ``images/``).
        n_per_category: Keep at most this many questions per capability set, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall.
    """

    name = "mm_vet"
    export_answers = staticmethod(export_answers)

    def layout_hint(self) -> str:
        return "Expected the unzipped mm-vet folder: <root>/mm-vet.json and <root>/images/<imagename>."

    def load_all(self) -> list[EvalSample]:
        path = self.find_file(self.root / "mm-vet.json")
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected an object keyed v1_0, v1_1, ...; found {type(data).__name__}.")
        samples = []
        for key, row in data.items():
            where = f"{path} entry '{key}'"
            fix = "Fix: use the published mm-vet.json (imagename, question, answer, capability)."
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected an object, found {type(row).__name__}. {fix}")
            question = self.required(row, "question", where, fix)
            capability = row.get("capability") or []
            samples.append(
                EvalSample(
                    id=key,
                    benchmark=self.name,
                    prompt=question,
                    image=self.image_file(
                        path.parent / "images" / self.required(row, "imagename", where, fix), where
                    ),
                    judge_question=question,
                    category=",".join(capability) or None,
                    harmful=False,
                    reference=self.required(row, "answer", where, fix),
                    meta={"mmvet_key": key, "capability": list(capability)},
                )
            )
        return samples

    def export(self, samples: list[EvalSample], answers: list[str], output_dir: Path) -> Path:
        """``<output_dir>/mmvet_answers.json`` in the grader's format (see :func:`export_answers`)."""
        return export_answers(samples, answers, Path(output_dir) / "mmvet_answers.json")
