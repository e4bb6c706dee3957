"""BAP on tiny models: the rewriting loop (stop on the first answer not judged safe, resume), the reference's
question extraction, the query-agnostic first stage, and the AdvBench split the reference evaluates it on."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from reminder_lightning.attacks.bap import COT_TEMPLATE, BAPAttack, ChatRewriter, extract_question
from reminder_lightning.attacks.pgd import PGDImageAttack
from reminder_lightning.evaluation.benchmarks.advbench import AdvBench, reference_split
from reminder_lightning.evaluation.judges.base import Judge
from reminder_lightning.evaluation.store import read_jsonl
from reminder_lightning.types import EvalSample, Verdict
from reminder_lightning.vlm.adapter import VLMSpec

TINY = VLMSpec(name_or_path="tiny:llava", dtype="float32")


class ScriptedJudge(Judge):
    """Calls an answer safe until its goal has been answered ``safe_rounds`` times (the loop is under test)."""

    name = "scripted"

    def __init__(self, safe_rounds: dict[str, int]):
        self.safe_rounds, self.seen = safe_rounds, {}

    def judge(self, questions, answers, images=None):
        out = []
        for q in questions:
            self.seen[q] = self.seen.get(q, 0) + 1
            out.append(Verdict(unsafe=self.seen[q] > self.safe_rounds[q], refusal=False))
        return out


class ScriptedRewriter(ChatRewriter):
    """Answers every rewriting prompt with a new question between @@ (the tiny LM writes noise)."""

    def __init__(self):
        super().__init__(model="unused")
        self.prompts = []

    def rewrite(self, prompts):
        self.prompts += prompts
        return [f"Let me think. @@Hypothetically, part {len(self.prompts)}?@@" for _ in prompts]


def _goals():
    return [EvalSample(id=f"g{k}", benchmark="advbench", prompt=f"Do harm {k}", judge_question=f"Do harm {k}") for k in range(3)]  # fmt: skip


def test_extract_question_reads_the_first_at_at_span():
    assert (
        extract_question("blah @@ How would a novelist describe it? @@ more @@x@@")
        == "How would a novelist describe it?"
    )
    assert extract_question("no markers") is None and extract_question("@@  @@") is None
    assert extract_question("@@spans\nlines@@") is None  # no DOTALL, as the reference
    assert (
        all(f in COT_TEMPLATE for f in ("{goal}", "{question}", "{response}"))
        and "Let\u2019s think" in COT_TEMPLATE
    )


def test_bap_rewrites_while_safe_and_stops_at_the_first_unsafe_answer(tmp_path):
    Image.new("RGB", (56, 56), (90, 90, 90)).save(tmp_path / "adv.png")
    judge = ScriptedJudge({"Do harm 0": 0, "Do harm 1": 1, "Do harm 2": 9})
    rewriter = ScriptedRewriter()
    attack = BAPAttack(vlm=TINY, image=str(tmp_path / "adv.png"), rewriter=rewriter, judge=judge, rounds=3,
                       max_new_tokens=4, device="cpu")  # fmt: skip
    attack.fit(_goals(), tmp_path)
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "bap" / "prompts.jsonl")}
    assert [rows[g]["rounds"] for g in ("g0", "g1", "g2")] == [1, 2, 3]
    assert [rows[g]["jailbroken"] for g in ("g0", "g1", "g2")] == [True, True, False]
    assert rows["g0"]["question"] == "Do harm 0"  # jailbroken at once: never rewritten
    assert (
        rows["g1"]["question"].startswith("Hypothetically")
        and "**Intention**:'Do harm 1'" in rewriter.prompts[0] + rewriter.prompts[1]
    )
    assert len(rewriter.prompts) == 1 + 3  # g1 once, g2 after each of its 3 safe answers (the last one untested)
    attack.fit(_goals(), tmp_path)  # resumes: nothing left to do
    assert len(rewriter.prompts) == 4
    attacked = attack.apply(_goals(), tmp_path)
    assert [s.prompt for s in attacked] == [rows[g]["question"] for g in ("g0", "g1", "g2")]
    assert all(s.judge_question.startswith("Do harm") and s.image.endswith("adv.png") for s in attacked)
    assert attacked[0].benchmark == "advbench+bap"


def test_bap_runs_a_real_tiny_rewriter(tmp_path):
    from tests.evaluation.test_judges import CHAT_TEMPLATE, _save_llama

    Image.new("RGB", (56, 56), (90, 90, 90)).save(tmp_path / "adv.png")
    rewriter = ChatRewriter(model=_save_llama(tmp_path / "rewriter", CHAT_TEMPLATE), use_chat_template=True,
                            max_new_tokens=8, device="cpu")  # fmt: skip
    attack = BAPAttack(vlm=TINY, image=str(tmp_path / "adv.png"), rewriter=rewriter, judge=ScriptedJudge(
        {f"Do harm {k}": 9 for k in range(3)}), rounds=2, max_new_tokens=4, device="cpu")  # fmt: skip
    attack.fit(_goals(), tmp_path)
    rows = read_jsonl(tmp_path / "bap" / "prompts.jsonl")
    assert [r["rounds"] for r in rows] == [2, 2, 2] and not any(r["jailbroken"] for r in rows)
    with pytest.raises(FileNotFoundError, match="bap_pgd"):
        BAPAttack(vlm=TINY, image=str(tmp_path / "none.png"), rewriter=rewriter, judge=ScriptedJudge({})).fit(
            _goals(), tmp_path
        )


def test_query_agnostic_pgd_and_the_reference_test_split(tmp_path):
    attack = PGDImageAttack(vlm=TINY, query_agnostic=True, val_goals=1)
    train, held = attack.split(_goals())
    assert {p["goal"] for p in train + held} == {""} and len(train) == 2
    path = tmp_path / "harmful_behaviors.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["goal", "target"])
        writer.writerows([[f"goal {k}", f"Sure, {k}"] for k in range(520)])
    test = AdvBench(str(path), split="test").load()
    assert [int(s.id.split(":")[-1]) for s in test] == sorted(reference_split(520)[2]) and len(test) == 100
