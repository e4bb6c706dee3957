"""MM-SafetyBench (Liu et al., ECCV 2024): query-relevant SD / typography images with a rephrased question."""

from __future__ import annotations

import json
from pathlib import Path

from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.types import EvalSample

#: The 13 scenarios, spelled as the published folders and files are (typos included: "Activitiy").
SCENARIOS = (
    "01-Illegal_Activitiy",
    "02-HateSpeech",
    "03-Malware_Generation",
    "04-Physical_Harm",
    "05-EconomicHarm",
    "06-Fraud",
    "07-Sex",
    "08-Political_Lobbying",
    "09-Privacy_Violence",
    "10-Legal_Opinion",
    "11-Financial_Advice",
    "12-Health_Consultation",
    "13-Gov_Decision",
)

#: The text the paper pairs with each image type: SD images come with the SD rephrasing ("The image shows
#: a phrase of an activity ..."), typography images with the one that points at the text in the image.
PROMPT_FIELD = {"SD": "Rephrased Question(SD)", "TYPO": "Rephrased Question", "SD_TYPO": "Rephrased Question"}


class MMSafetyBench(Benchmark):
    """MM-SafetyBench: every question of the chosen scenarios, once per chosen image type.

    Layout (``github.com/isXinLiu/MM-SafetyBench``, images from its download link):

    * ``<root>/data/processed_questions/<scenario>.json``: ``{"0": {"Question", "Changed Question",
      "Key Phrase", "Phrase Type", "Rephrased Question", "Rephrased Question(SD)"}, "1": ...}``;
    * ``<image_root>/<scenario>/<SD|TYPO|SD_TYPO>/<id>.jpg`` (default ``image_root``: ``<root>/data/imgs``).

    Sample per (question, image type): ``prompt`` = ``Rephrased Question(SD)`` for ``SD`` and
    ``Rephrased Question`` for ``TYPO`` / ``SD_TYPO``; ``judge_question`` = ``Question`` (the original);
    ``category`` = the scenario; ``benchmark`` = ``mm_safetybench/<image type>``; ``harmful`` = True.
    ``n_per_category`` counts questions: a drawn question keeps all its image types.

    Args:
        root: The MM-SafetyBench repository root (the folder holding ``data/``).
        image_types: Image types to evaluate, any of ``SD``, ``TYPO``, ``SD_TYPO`` (None: all three).
        scenarios: Scenario folder names to load (None: all 13, see ``SCENARIOS``).
        image_root: Folder holding ``<scenario>/<image type>/<id>.jpg``; default ``<root>/data/imgs``.
        n_per_category: Keep at most this many questions per scenario, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall.
        draw: How the subsample is drawn (see :class:`Benchmark`); the reference's 394 (SD+TYPO, 8 scenarios, 50
            each, 44 of Malware) is ``n_per_category: 50, seed: 0, draw: datasets_shuffle``.
    """

    def __init__(
        self,
        root: str,
        image_types: list[str] | None = None,
        scenarios: list[str] | None = None,
        image_root: str | None = None,
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        draw: str = "seeded",
    ) -> None:
        super().__init__(root, n_per_category=n_per_category, seed=seed, limit=limit, draw=draw)
        self.image_types = list(image_types) if image_types is not None else list(PROMPT_FIELD)
        self.scenarios = list(scenarios) if scenarios is not None else list(SCENARIOS)
        bad = [t for t in self.image_types if t not in PROMPT_FIELD]
        if bad or not self.image_types:
            raise ValueError(f"image_types {self.image_types}: each must be one of {list(PROMPT_FIELD)}.")
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad or not self.scenarios:
            raise ValueError(
                f"scenarios {bad or '[]'}: unknown; the published names are {list(SCENARIOS)} "
                "(spelled as published, e.g. '01-Illegal_Activitiy')."
            )
        self.image_root = Path(image_root) if image_root else self.root / "data" / "imgs"
        one = len(self.image_types) == 1
        self.name = f"mm_safetybench/{self.image_types[0]}" if one else "mm_safetybench"

    def layout_hint(self) -> str:
        return (
            "Expected an MM-SafetyBench clone: <root>/data/processed_questions/<scenario>.json and images "
            "<image_root>/<scenario>/<SD|TYPO|SD_TYPO>/<id>.jpg (image_root defaults to <root>/data/imgs)."
        )

    def sampling_unit(self, sample: EvalSample) -> str:
        return f"{sample.category}/{sample.meta['question_id']}"

    def load_all(self) -> list[EvalSample]:
        samples = []
        for scenario in self.scenarios:
            path = self.root / "data" / "processed_questions" / f"{scenario}.json"
            if not path.is_file():
                raise FileNotFoundError(f"{self.name}: question file not found: {path}. {self.layout_hint()}")
            questions = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(questions, dict):
                raise ValueError(
                    f"{path}: expected an object keyed by question id, found {type(questions).__name__}."
                )
            for qid, row in questions.items():
                where = f"{path} question '{qid}'"
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: expected an object, found {type(row).__name__}.")
                fix = "Fix: use the published processed_questions files, or drop this image type."
                question = self.required(row, "Question", where, fix)
                for image_type in self.image_types:
                    image = self.image_root / scenario / image_type / f"{qid}.jpg"
                    samples.append(
                        EvalSample(
                            id=f"{image_type}/{scenario}/{qid}",
                            benchmark=f"mm_safetybench/{image_type}",
                            prompt=self.required(row, PROMPT_FIELD[image_type], where, fix),
                            image=self.image_file(image, where),
                            judge_question=question,
                            category=scenario,
                            harmful=True,
                            meta={
                                "question_id": qid,
                                "image_type": image_type,
                                "key_phrase": row.get("Key Phrase"),
                            },
                        )
                    )
        return samples
