"""The refusal pools the demo's SAPT records draw their safe answers from, and the `records` step that picks one."""

from __future__ import annotations

import pytest

from reminder_lightning.data.refusals import DIRECT_REFUSALS, FIRM_REFUSALS, REFUSAL_POOLS, REFUSALS, refusal_for
from reminder_lightning.demo.prepare import records
from reminder_lightning.evaluation.judges.keyword import KeywordJudge
from reminder_lightning.evaluation.store import read_jsonl, write_jsonl


def test_direct_pool_is_the_varied_pool_without_its_apologies():
    apologies = [r for r in REFUSALS if r not in DIRECT_REFUSALS]
    assert set(DIRECT_REFUSALS) < set(REFUSALS) and len(DIRECT_REFUSALS) == 19
    assert apologies and all(r.lower().startswith(("i'm sorry", "sorry")) for r in apologies)
    assert not any("sorry" in r.lower().split(",")[0] for r in DIRECT_REFUSALS)
    # still refusals a judge that never saw them recognises, and still varied in wording
    assert all(v.refusal for v in KeywordJudge().judge(["q"] * len(DIRECT_REFUSALS), list(DIRECT_REFUSALS)))
    assert len({r.split()[0] + " " + r.split()[1] for r in DIRECT_REFUSALS}) >= 10
    assert REFUSAL_POOLS == {"varied": REFUSALS, "direct": DIRECT_REFUSALS, "firm": FIRM_REFUSALS}


def test_firm_pool_is_the_direct_pool_without_openings_on_im():
    assert set(FIRM_REFUSALS) < set(DIRECT_REFUSALS) and len(FIRM_REFUSALS) == 15
    assert not any(r.startswith("I'm") for r in FIRM_REFUSALS)
    assert all(v.refusal for v in KeywordJudge().judge(["q"] * len(FIRM_REFUSALS), list(FIRM_REFUSALS)))


def _work(tmp_path):
    """A demo folder with two train harmful prompts the model complied with and one it refused."""
    data, answers = tmp_path / "data", tmp_path / "eval" / "answers"
    prompts = [{"id": f"advbench-{i}", "question": f"harmful request {i}", "image": f"images/{i}.png",
                "category": "Physical"} for i in range(3)]  # fmt: skip
    for split in ("train", "val", "gate"):
        for side in ("harmful", "benign"):
            write_jsonl(data / f"{split}_{side}.jsonl", prompts if (split, side) == ("train", "harmful") else [])
    texts = ["Sure, here is how to do it step by step.", "First you gather the materials you need.",
             "I can't help with that."]  # fmt: skip
    keys = [f"demo_train_harmful/{p['id']}" for p in prompts]
    write_jsonl(answers / "generations.jsonl", [{"key": k, "text": t} for k, t in zip(keys, texts, strict=True)])
    write_jsonl(answers / "judgements.keyword.jsonl",
                [{"key": k, "refusal": t.startswith("I can't")} for k, t in zip(keys, texts, strict=True)])  # fmt: skip
    return tmp_path


@pytest.mark.parametrize("pool", ["varied", "direct", "firm"])
def test_records_draw_safe_answers_from_the_chosen_pool(tmp_path, pool):
    work = _work(tmp_path)
    records(work_dir=str(work), refusals=pool)
    rows = read_jsonl(work / "data" / "sapt_train_harmful.jsonl")
    assert [r["id"] for r in rows] == ["advbench-0", "advbench-1"]  # the refused answer is no harmful answer
    assert [r["safe_answer"] for r in rows] == [refusal_for(r["id"], REFUSAL_POOLS[pool]) for r in rows]
    assert all(r["safe_answer"] in REFUSAL_POOLS[pool] for r in rows)


def test_records_refuse_an_unknown_pool(tmp_path):
    with pytest.raises(ValueError, match=r"refusals must be one of \['direct', 'firm', 'varied'\], got 'polite'"):
        records(work_dir=str(_work(tmp_path)), refusals="polite")
