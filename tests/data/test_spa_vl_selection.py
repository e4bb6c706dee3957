"""The reference's SPA-VL selection on fixtures in the published layout: groups, the two-sided judge filter (a
pair whose chosen answer is judged unsafe is dropped), the seeded stratified draw, the verdict cache, and
SPAVLTrain reading the selection back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from reminder_lightning.cli import main
from reminder_lightning.commands.select_spa_vl import REFERENCE_GROUPS, REFERENCE_QUOTAS, select_spa_vl
from reminder_lightning.data.records import RecordError
from reminder_lightning.data.spa_vl import SPAVLTrain
from reminder_lightning.evaluation.judges.keyword import KeywordJudge

THEFT = "Malicious Use/Illegal activities/theft"
RUMORS = "Malicious Use/Fraud or deceptive action/rumors"
OUTSIDE = "Information & Safety Harms/Misinformation/academic"  # in no reference group


def _rows() -> list[dict]:
    """10 theft pairs (2 with a compliant `chosen`, 1 with a refusing `rejected`), 3 rumor pairs, 2 outside."""
    rows = []
    for k in range(15):
        category = THEFT if k < 10 else RUMORS if k < 13 else OUTSIDE
        chosen = f"I'm sorry, but I can't help with stealing item {k}."
        rejected = f"Sure, here is how to do it {k}: first, wait until dark."
        if k in (1, 2):
            chosen = f"Sure, here is a safer way {k}: ask the owner."  # chosen judged unsafe -> dropped
        if k == 3:
            rejected = "I cannot help with that."  # rejected judged safe -> dropped
        rows.append({"question": f"question {k}", "chosen": chosen, "rejected": rejected, "category": category})
    return rows


def write_spa_vl(folder: Path) -> tuple[Path, Path]:
    """SPA-VL's hub train parquet (image bytes, image_name, no class columns) plus train.zip's meta.json."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    rows = _rows()
    folder.mkdir(parents=True)
    data = {
        "image": [Image.new("RGB", (6, 4), (k, 0, 0)) for k in range(len(rows))],
        "question": [r["question"] for r in rows],
        "chosen": [r["chosen"] for r in rows],
        "rejected": [r["rejected"] for r in rows],
        "image_name": [f"{k}.jpg" for k in range(len(rows))],
    }
    Dataset.from_dict(data).cast_column("image", ImageFeature()).to_parquet(
        str(folder / "train-00000-of-00001.parquet")
    )
    meta = [
        {
            "image": f"{r['category']}/{k}.jpg",
            "question": r["question"],
            "chosen": r["chosen"],
            "rejected": r["rejected"],
        }
        for k, r in enumerate(rows)
    ]
    (folder.parent / "meta.json").write_text(json.dumps(meta))
    return folder, folder.parent / "meta.json"


class CountingKeywordJudge(KeywordJudge):
    """The keyword judge, counting the answers it is asked about (to see the cache work)."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def judge(self, questions, answers, images=None):
        self.seen += len(answers)
        return super().judge(questions, answers, images)


def test_reference_groups_and_quotas():
    assert sum(REFERENCE_QUOTAS.values()) == 1000 and set(REFERENCE_QUOTAS) == set(REFERENCE_GROUPS)
    assert len(REFERENCE_GROUPS) == 7 and THEFT in REFERENCE_GROUPS["Illegal Activity"]


def test_selection_keeps_vouched_pairs_draws_per_group_and_resumes(tmp_path):
    data, meta = write_spa_vl(tmp_path / "spa_vl" / "data")
    out = tmp_path / "selection.json"
    judge = CountingKeywordJudge()
    quotas = {"Illegal Activity": 5, "Fraud": 10}
    report = select_spa_vl(str(data), judge, str(out), meta=str(meta), quotas=quotas, seed=3)
    theft = report["groups"]["Illegal Activity"]
    assert (theft["candidates"], theft["qualified"], theft["selected"]) == (10, 7, 5)
    fraud = report["groups"]["Fraud"]
    assert (fraud["candidates"], fraud["qualified"], fraud["selected"]) == (3, 3, 3)  # fewer than the quota: all
    dropped = {"1.jpg", "2.jpg", "3.jpg", "13.jpg", "14.jpg"}
    assert len(report["ids"]) == 8 and not dropped & set(report["ids"])
    assert judge.seen == 2 * 13  # both answers of every pair in a group, nothing outside

    again = CountingKeywordJudge()
    assert select_spa_vl(str(data), again, str(out), meta=str(meta), quotas=quotas, seed=3)["ids"] == report["ids"]
    assert again.seen == 0  # every verdict came from the cache
    other_seed = select_spa_vl(str(data), again, str(out), meta=str(meta), quotas=quotas, seed=4)["ids"]
    assert set(other_seed) != set(report["ids"]) and again.seen == 0

    records = SPAVLTrain(str(data), selection=str(out)).load()
    assert [r.id for r in records] == other_seed  # the file holds the last selection made
    assert all(r.harmful_answer and "sorry" in r.safe_answer for r in records)


def test_selection_fails_closed(tmp_path):
    data, meta = write_spa_vl(tmp_path / "spa_vl" / "data")
    with pytest.raises(ValueError, match="no category.*pass `meta`"):
        select_spa_vl(str(data), KeywordJudge(), str(tmp_path / "s.json"))
    with pytest.raises(ValueError, match="groups that do not exist"):
        select_spa_vl(str(data), KeywordJudge(), str(tmp_path / "s.json"), meta=str(meta), quotas={"Weather": 3})
    (tmp_path / "stale.json").write_text(json.dumps({"ids": ["0.jpg", "99.jpg"]}))
    with pytest.raises(RecordError, match="1 selected ids are not in"):
        SPAVLTrain(str(data), selection=str(tmp_path / "stale.json")).load()
    with pytest.raises(FileNotFoundError, match="select-spa-vl"):
        SPAVLTrain(str(data), selection=str(tmp_path / "none.json")).load()
    wrong = json.loads(meta.read_text())
    wrong[4]["question"] = "another question"
    meta.write_text(json.dumps(wrong))
    with pytest.raises(RecordError, match="question differs from"):
        SPAVLTrain(str(data), meta=str(meta)).load()


def test_select_spa_vl_is_a_command(tmp_path):
    data, meta = write_spa_vl(tmp_path / "spa_vl" / "data")
    out = tmp_path / "selection.json"
    main(["select-spa-vl", "--path", str(data), "--meta", str(meta), "--output", str(out),
          "--judge", "reminder_lightning.evaluation.judges.keyword.KeywordJudge", "--quotas", '{"Fraud": 2}'])  # fmt: skip
    assert len(json.loads(out.read_text())["ids"]) == 2


def test_reference_draw_is_datasets_shuffle():
    from datasets import Dataset

    from reminder_lightning.commands.select_spa_vl import reference_draw

    rows = Dataset.from_dict({"i": list(range(37))})
    assert reference_draw(37, 10, 42) == rows.shuffle(seed=42).select(range(10))["i"]
    assert reference_draw(3, 10, 42) == rows.select(range(3)).shuffle(seed=42)["i"]
