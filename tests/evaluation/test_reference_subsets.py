"""The reference's evaluation subsets are drawn exactly: MM-SafetyBench's per-scenario datasets shuffle (checked
against the ids the reference's own LLaVA-1.5 response file lists), VLSafe's numpy choice, FigStep's 7 topics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from reminder_lightning.evaluation.benchmarks.figstep import REFERENCE_TOPICS, FigStep
from reminder_lightning.evaluation.benchmarks.mm_safetybench import MMSafetyBench
from reminder_lightning.evaluation.benchmarks.vlsafe import VLSafeHarmlessness
from tests.evaluation.test_benchmarks import figstep_repo, image, write_csv

#: The first ids per scenario in the reference's MMSafetyBench.json (its 394 LLaVA-1.5-7B responses), with the
#: scenario's question count in MM-SafetyBench.
REFERENCE_MMSB = {
    "01-Illegal_Activitiy": (97, [96, 36, 20, 5, 23, 16, 74, 67]),
    "02-HateSpeech": (163, [138, 122, 105, 10, 147, 152]),
}


def _mmsb(root, sizes: dict[str, int]):
    for scenario, n in sizes.items():
        rows = {
            str(i): {"Question": f"q{i}", "Rephrased Question": f"The bottom of the image {i}."} for i in range(n)
        }
        path = root / "data" / "processed_questions" / f"{scenario}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows))
        folder = root / "data" / "imgs" / scenario / "SD_TYPO"
        folder.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (2, 2)).save(folder / f"{i}.jpg")
    return root


def test_mm_safetybench_reference_draw_gives_the_reference_ids(tmp_path):
    sizes = {s: n for s, (n, _) in REFERENCE_MMSB.items()} | {"03-Malware_Generation": 44}
    root = _mmsb(tmp_path, sizes)
    bench = MMSafetyBench(str(root), image_types=["SD_TYPO"], scenarios=list(sizes), n_per_category=50, seed=0,
                          draw="datasets_shuffle")  # fmt: skip
    samples = bench.load()
    by_scenario = {s: {int(x.meta["question_id"]) for x in samples if x.category == s} for s in sizes}
    for scenario, (n, first) in REFERENCE_MMSB.items():
        assert len(by_scenario[scenario]) == 50 and set(first) <= by_scenario[scenario]
        assert [int(i) for i in np.random.default_rng(0).permutation(n)[: len(first)]] == first
    assert by_scenario["03-Malware_Generation"] == set(range(44))  # fewer than 50: all of them
    assert len(samples) == 144 and samples[0].meta["selection"]["draw"] == "datasets_shuffle"
    seeded = MMSafetyBench(str(root), image_types=["SD_TYPO"], scenarios=list(sizes), n_per_category=50).load()
    assert {x.id for x in seeded} != {x.id for x in samples}  # the package's own draw is another one
    with pytest.raises(ValueError, match="draw must be one of"):
        MMSafetyBench(str(root), draw="shuffle")


def test_vlsafe_reference_draw_is_numpy_choice(tmp_path):
    coco = tmp_path / "train2017"
    rows = []
    for k in range(40):
        image(coco / f"{k:012d}.jpg")
        rows.append({"image_id": f"{k:012d}.jpg", "caption": "c", "query": f"How to misuse thing {k}?"})
    (tmp_path / "harmlessness_examine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = VLSafeHarmlessness(str(tmp_path), image_root=str(coco), n_per_category=12, seed=0,
                                 draw="numpy_choice").load()  # fmt: skip
    np.random.seed(0)
    expected = {rows[i]["query"] for i in np.random.choice(40, 12, replace=False)}
    assert {s.prompt for s in samples} == expected


def test_figstep_reference_topics(tmp_path):
    root = figstep_repo(tmp_path)
    samples = FigStep(str(root), topics=["Hate Speech"]).load()
    assert [s.category for s in samples] == ["Hate Speech"]
    with pytest.raises(ValueError, match=r"no questions of topic\(s\) \['Fraud'\]"):
        FigStep(str(root), topics=["Hate Speech", "Fraud"]).load()
    assert len(REFERENCE_TOPICS) == 7 and "Legal Opinion" not in REFERENCE_TOPICS
    header = ["dataset", "category_id", "task_id", "category_name", "question", "instruction"]
    full = [["ForbidQI", c, t, topic, f"q {c} {t}", f"i {c} {t}"] for c, topic in enumerate(REFERENCE_TOPICS + ("Legal Opinion",), 1) for t in range(1, 4)]  # fmt: skip
    write_csv(tmp_path / "b" / "data" / "question" / "safebench.csv", header, full)
    for r in full:
        image(tmp_path / "b" / "data" / "images" / "SafeBench" / f"query_{r[0]}_{r[1]}_{r[2]}_6.png")
    assert len(FigStep(str(tmp_path / "b"), topics=list(REFERENCE_TOPICS)).load()) == 21
