"""DemoDataModule: real prompts, the demo model's own answers, a prompt-end probe, then SAPT batches.

``prepare_data`` (once, cached under ``work_dir/data``):

1. AdvBench behaviours and benign questions are split into train / validation / held-out test with ``seed``.
2. Every prompt gets an image: a FigStep-style typographic rendering of its question (or a plain image).
3. The demo model answers the train and validation prompts itself (greedy). Harmful records take its
   compliant answer as the harmful answer (the model is not safety-aligned) and a refusal as the safe
   answer; benign records take its own answer, so training keeps its behaviour.
4. A probe is fitted on prompt-end hidden states of the train prompts (the reference's recipe), its
   threshold set for ``probe_target_fpr`` on the validation benign prompts; SAPT's BCE term uses it.

The held-out test prompts are written in :class:`GenericBenchmark` layout for the before/after evaluation.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Literal

from lightning.pytorch.utilities import rank_zero_info

from reminder_lightning.data.datamodule import HarmfulBenignDataModule
from reminder_lightning.data.sapt import SaptSettings
from reminder_lightning.data.sources import LocalRecords
from reminder_lightning.demo.prompts import Prompt, advbench_prompts, benign_prompts, render_typographic
from reminder_lightning.evaluation.store import JsonlAppender, read_jsonl
from reminder_lightning.vlm.adapter import VLMSpec

DEFAULT_REFUSALS = ("I'm sorry, but I can't help with that. It could cause real harm to people.",)


class DemoDataModule(HarmfulBenignDataModule):
    """The demo's data, built from packages and the model's own answers (see the module docstring).

    Args:
        work_dir: Where data, answers, images and the probe are cached.
        n_train: Train prompts per class.
        n_val: Validation prompts per class (probe threshold).
        n_test_harmful: Held-out harmful prompts for the before/after evaluation.
        n_test_benign: Held-out benign prompts for the before/after evaluation.
        answer_tokens: Tokens of each self-generated answer.
        images: ``typographic`` (the question rendered, FigStep-style), ``plain`` or ``none``.
        generation_batch_size: Prompts per generation batch.
        probe_components: PCA components of the prompt-end probe.
        probe_target_fpr: Share of validation benign prompts the prompt-end probe may flag.
        refusals: Safe answers of harmful records, drawn at random per record (default: one short refusal).
        num_examples: SAPT examples drawn per run (None: every train record once).
        harmful_fraction: Share of harmful examples.
        batch_size: SAPT examples per batch.
        num_workers: DataLoader workers.
        seed: Seed of the split, the refusals and the SAPT sampling.
        sapt: Example construction settings.
        vlm: The demo model (linked from ``model.vlm``).
        num_tokens: Reminder length (linked from ``model.num_tokens``).
    """

    def __init__(
        self,
        work_dir: str = "runs/demo",
        n_train: int = 128,
        n_val: int = 32,
        n_test_harmful: int = 64,
        n_test_benign: int = 64,
        answer_tokens: int = 64,
        images: Literal["typographic", "plain", "none"] = "typographic",
        generation_batch_size: int = 16,
        probe_components: int = 4,
        probe_target_fpr: float = 0.05,
        refusals: list[str] | None = None,
        num_examples: int | None = None,
        harmful_fraction: float = 0.5,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
        sapt: SaptSettings | None = None,
        vlm: VLMSpec | None = None,
        num_tokens: int = 4,
    ):
        super().__init__(
            harmful=None,
            benign=None,
            num_examples=num_examples,
            harmful_fraction=harmful_fraction,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            sapt=sapt,
            vlm=vlm,
            num_tokens=num_tokens,
        )
        self.work_dir = Path(work_dir)
        self.data_dir = self.work_dir / "data"
        self.n_train, self.n_val = n_train, n_val
        self.n_test_harmful, self.n_test_benign = n_test_harmful, n_test_benign
        self.answer_tokens = answer_tokens
        self.images = images
        self.generation_batch_size = generation_batch_size
        self.probe_components = probe_components
        self.probe_target_fpr = probe_target_fpr
        self.refusals = list(refusals) if refusals else list(DEFAULT_REFUSALS)

    # ------------------------------------------------------------------ prepare (rank zero, cached)
    def settings(self) -> dict:
        return {
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test_harmful": self.n_test_harmful,
            "n_test_benign": self.n_test_benign,
            "answer_tokens": self.answer_tokens,
            "images": self.images,
            "seed": self.seed,
            "model": self.vlm.name_or_path,
            "probe_components": self.probe_components,
            "probe_target_fpr": self.probe_target_fpr,
            "refusals": self.refusals,
        }

    def prepare_data(self) -> None:
        marker = self.data_dir / "ready.json"
        if marker.exists() and json.loads(marker.read_text()) == self.settings():
            rank_zero_info(f"Demo data: using the cache in {self.data_dir}.")
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        splits = self._split_prompts()
        rank_zero_info("Demo data: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
        images = {p.id: self._image(p) for ps in splits.values() for p in ps}
        from reminder_lightning.vlm.adapter import VLMAdapter

        adapter = VLMAdapter.load(self.vlm)
        adapter.requires_grad_(False)
        to_answer = [
            p for name in ("train_harmful", "train_benign", "val_harmful", "val_benign") for p in splits[name]
        ]
        answers = self._answers(adapter, to_answer, images)
        self._write_records(splits, images, answers)
        self._fit_probe(adapter, splits, images)
        marker.write_text(json.dumps(self.settings()))

    def _split_prompts(self) -> dict[str, list[Prompt]]:
        rng = random.Random(f"demo-split:{self.seed}")
        harmful, benign = advbench_prompts(), benign_prompts()
        rng.shuffle(harmful)
        rng.shuffle(benign)
        need_h = self.n_test_harmful + self.n_val + self.n_train
        need_b = self.n_test_benign + self.n_val + self.n_train
        if need_h > len(harmful) or need_b > len(benign):
            raise ValueError(
                f"The demo asks for {need_h} harmful / {need_b} benign prompts; the packages have "
                f"{len(harmful)} / {len(benign)}. Lower n_train, n_val or n_test_*."
            )
        cut = {
            "h": [self.n_test_harmful, self.n_val, self.n_train],
            "b": [self.n_test_benign, self.n_val, self.n_train],
        }
        out = {}
        for kind, pool in (("harmful", harmful), ("benign", benign)):
            a, b, c = cut[kind[0]]
            out[f"test_{kind}"], out[f"val_{kind}"], out[f"train_{kind}"] = (
                pool[:a],
                pool[a : a + b],
                pool[a + b : a + b + c],
            )
        return out

    def _image(self, prompt: Prompt) -> str | None:
        if self.images == "none":
            return None
        path = self.data_dir / "images" / f"{prompt.id}.png"
        if not path.exists():
            if self.images == "typographic":
                render_typographic(prompt.question, path)
            else:
                from PIL import Image

                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (224, 224), (230, 230, 230)).save(path)
        return str(path.resolve())

    def _answers(self, adapter, prompts: list[Prompt], images: dict[str, str | None]) -> dict[str, dict]:
        """The model's own greedy answers, cached in ``answers.jsonl`` as they are generated."""
        from PIL import Image
        from tqdm.auto import tqdm

        from reminder_lightning.reminder.generation import ReminderGenerator

        path = self.data_dir / "answers.jsonl"
        cached = {row["id"]: row for row in read_jsonl(path) if row.get("tokens") == self.answer_tokens}
        todo = [p for p in prompts if p.id not in cached]
        generator = ReminderGenerator(adapter, None)
        with JsonlAppender(path) as out:
            for start in tqdm(
                range(0, len(todo), self.generation_batch_size),
                desc="demo model answers",
                unit="batch",
                disable=not todo,
            ):
                chunk = todo[start : start + self.generation_batch_size]
                imgs = [Image.open(images[p.id]).convert("RGB") if images[p.id] else None for p in chunk]
                outs = generator.generate(imgs, [p.question for p in chunk], max_new_tokens=self.answer_tokens)
                for prompt, result in zip(chunk, outs, strict=True):
                    row = {
                        "id": prompt.id,
                        "text": result.text.strip(),
                        "token_ids": result.token_ids,
                        "tokens": self.answer_tokens,
                    }
                    out.write(row)
                    cached[prompt.id] = row
        return cached

    def _write_records(self, splits, images, answers) -> None:
        from reminder_lightning.evaluation.judges.keyword import KeywordJudge

        rng = random.Random(f"demo-refusals:{self.seed}")
        judge = KeywordJudge()
        for split in ("train", "val"):
            harmful = splits[f"{split}_harmful"]
            verdicts = judge.judge([p.question for p in harmful], [answers[p.id]["text"] for p in harmful])
            rows = [
                {
                    "id": p.id,
                    "question": p.question,
                    "image": images[p.id],
                    "category": p.category,
                    "harmful_answer": answers[p.id]["text"],
                    "safe_answer": rng.choice(self.refusals),
                }
                for p, v in zip(harmful, verdicts, strict=True)
                if not v.refusal and len(answers[p.id]["text"]) >= 20
            ]
            rank_zero_info(f"Demo data: {len(rows)}/{len(harmful)} {split} harmful answers comply (kept).")
            _write_jsonl(self.data_dir / f"{split}_harmful.jsonl", rows)
            benign = [
                {
                    "id": p.id,
                    "question": p.question,
                    "image": images[p.id],
                    "category": p.category,
                    "safe_answer": answers[p.id]["text"],
                }
                for p in splits[f"{split}_benign"]
                if len(answers[p.id]["text"]) >= 20
            ]
            _write_jsonl(self.data_dir / f"{split}_benign.jsonl", benign)
        for kind in ("harmful", "benign"):
            _write_jsonl(
                self.data_dir / f"test_{kind}.jsonl",
                [
                    {"id": p.id, "question": p.question, "image": images[p.id], "category": p.category}
                    for p in splits[f"test_{kind}"]
                ],
            )

    def _fit_probe(self, adapter, splits, images) -> None:
        import torch
        from PIL import Image

        from reminder_lightning.reminder.artifact import save_probe
        from reminder_lightning.reminder.detector import SafetyProbe
        from reminder_lightning.reminder.probe_fitting import collect_hidden_states, threshold_for_fpr

        def states(prompts):
            imgs = [Image.open(images[p.id]).convert("RGB") if images[p.id] else None for p in prompts]
            return collect_hidden_states(
                adapter,
                [p.question for p in prompts],
                imgs,
                "prompt_end",
                batch_size=self.generation_batch_size,
                desc="probe states",
            )

        h, b = states(splits["train_harmful"]), states(splits["train_benign"])
        probe = SafetyProbe.fit(
            torch.cat([h, b]),
            torch.cat([torch.zeros(len(h)), torch.ones(len(b))]),
            num_components=self.probe_components,
        )
        vh, vb = probe(states(splits["val_harmful"])), probe(states(splits["val_benign"]))
        threshold = threshold_for_fpr(vb, self.probe_target_fpr)
        report = {
            "position": "prompt_end",
            "threshold": threshold,
            "val_accuracy": float(
                ((torch.cat([vh, vb]) > 0.5).float() == torch.cat([torch.zeros(len(vh)), torch.ones(len(vb))]))
                .float()
                .mean()
            ),
            "val_tpr_at_threshold": float((vh < threshold).float().mean()),
            "val_fpr_at_threshold": float((vb < threshold).float().mean()),
        }
        save_probe(self.data_dir / "probe.safetensors", probe, report)
        (self.data_dir / "probe.json").write_text(json.dumps(report, indent=2))
        rank_zero_info(f"Demo probe (prompt end): {report}")

    # ------------------------------------------------------------------ setup (every rank)
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.harmful_source = LocalRecords(str(self.data_dir / "train_harmful.jsonl"), kind="harmful")
        self.benign_source = LocalRecords(str(self.data_dir / "train_benign.jsonl"), kind="benign")
        super().setup(stage)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(path)
