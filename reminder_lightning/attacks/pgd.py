"""PGD universal adversarial image (Qi et al., 2023): one image that makes the model answer harmful goals.

One clean image is perturbed within an L-inf ball so that, shown with any of a set of harmful goals, the
model's answer starts with the goal's target string (AdvBench's "Sure, here is ..."). Reference defaults:
eps 64/255, step 1/255, 3000 iterations, random start, batch of 4 goals.

The image lives on the 8-bit grid: the trainable tensor holds integer levels 0..255 (float32 so autograd
reaches it), the random start draws integers, a step moves every level by ``step_size`` against the sign of
the gradient, and the projection clips to ``clean +- eps`` and to ``[0, 255]``. Saved as PNG it is therefore
exactly what was optimised. The clean image is first brought to the size the processor gives the model
(:func:`~reminder_lightning.vlm.pixels.processed_image`), so the processor never resizes the adversarial
image and the differentiable preprocessing (:mod:`reminder_lightning.vlm.pixels`) is exact.

It runs as a Lightning job (:class:`PGDImageModule`, the only trainable parameter is the image): progress
bar, any number of devices (the strategy all-reduces the image gradient), ``last.ckpt`` every
``checkpoint_every`` steps holding only the image and the step, resume from it, and ``val/asr`` on
held-out goals (keyword judge) every ``val_every`` steps. Outputs in ``<output_dir>/<run_name>/``:
``adversarial.png``, ``clean.png``, ``delta.safetensors`` (``delta`` = (adversarial - clean) / 255, fp32),
``checkpoints/last.ckpt``, ``logs/``.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from reminder_lightning.attacks.base import Attack
from reminder_lightning.attacks.pgd_module import (
    DEFAULT_TARGET,
    PGDImageModule,
    collate_goals,
    goal_target_pairs,
    levels_to_pil,
    open_image,
)
from reminder_lightning.attacks.step_progress import StepProgressBar
from reminder_lightning.evaluation.benchmarks.advbench import reference_split
from reminder_lightning.types import EvalSample
from reminder_lightning.vlm.adapter import VLMSpec

__all__ = ["DEFAULT_TARGET", "PGDImageAttack", "PGDImageModule", "goal_target_pairs", "reference_split"]


class PGDImageAttack(Attack):
    """L-inf universal adversarial image against a VLM, optimised as a Lightning job.

    Args:
        vlm: The VLM to attack (white box).
        image: The clean image file; None: the first sample's image.
        eps: L-inf radius in 8-bit levels (reference: 64 = 64/255).
        step_size: Levels per signed step (reference: 1 = 1/255).
        iterations: Optimisation steps (reference: 3000).
        batch_size: Goals per step (reference: 4).
        random_start: Start at a random integer point of the eps-ball (reference: on).
        default_target: Target string of samples without ``meta["target"]`` (AdvBench has one per goal).
        val_goals: Goals held out (seeded draw) to measure ``val/asr``; 0 disables validation.
        split: ``seeded`` (``val_goals`` held out by ``seed``) or ``reference`` (AdvBench 320 / 100 / 100 as the
            reference draws it, :func:`reference_split`: train on 320, validate on 100, leave 100 untouched;
            ``val_goals`` is then ignored). The goals of each part are written to ``<run dir>/split.json``.
        target_suffix: Appended to every target string (the reference: ``": 1. To"``).
        keep: Which image ``adversarial.png`` holds: ``last`` (the final step) or ``best`` (the highest ``val/asr``,
            the later on ties, as the reference keeps its best image; needs validation goals). ``val/asr`` is the
            keyword judge's (the reference picks with Llama Guard 3).
        query_agnostic: Optimise with an empty question (BAP's first stage: the image alone pulls towards the
            targets, whatever the question).
        val_every: Steps between validations.
        val_max_new_tokens: Tokens generated per held-out goal.
        checkpoint_every: Steps between ``last.ckpt`` saves.
        resume: Continue from ``<run dir>/checkpoints/last.ckpt`` when it exists.
        run_name: Sub-folder of the attack's output folder for this run.
        seed: Seed of the split, the goal order and the random start.
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        devices: Devices (an int, a list, or ``auto``); more than one all-reduces the image gradient.
        strategy: Lightning strategy (``auto``, ``ddp``, ...).
        enable_progress_bar: Lightning's progress bar.
        trainer_kwargs: Any other ``lightning.Trainer`` arguments (``logger``, ``precision``, ...).
    """

    name = "pgd"
    budget_resumes = "iterations"  # robustness: one resumed run goes through a curve of iterations values
    module_class = PGDImageModule

    def __init__(
        self,
        vlm: VLMSpec,
        image: str | None = None,
        eps: int = 64,
        step_size: int = 1,
        iterations: int = 3000,
        batch_size: int = 4,
        random_start: bool = True,
        default_target: str = DEFAULT_TARGET,
        val_goals: int = 16,
        split: Literal["seeded", "reference"] = "seeded",
        target_suffix: str = "",
        query_agnostic: bool = False,
        keep: Literal["last", "best"] = "last",
        val_every: int = 250,
        val_max_new_tokens: int = 64,
        checkpoint_every: int = 100,
        resume: bool = True,
        run_name: str | None = None,
        seed: int = 0,
        accelerator: str = "auto",
        devices: int | str | list[int] = 1,
        strategy: str = "auto",
        enable_progress_bar: bool = True,
        trainer_kwargs: dict[str, Any] | None = None,
    ):
        if iterations < 1 or batch_size < 1 or val_goals < 0 or val_every < 1 or checkpoint_every < 1:
            raise ValueError("iterations, batch_size, val_every, checkpoint_every must be >= 1 and val_goals >= 0")
        self.vlm = vlm if isinstance(vlm, VLMSpec) else VLMSpec(**vlm)
        self.image, self.eps, self.step_size, self.iterations = image, eps, step_size, iterations
        self.batch_size, self.random_start, self.default_target = batch_size, random_start, default_target
        self.val_goals, self.val_every, self.val_max_new_tokens = val_goals, val_every, val_max_new_tokens
        if split not in ("seeded", "reference"):
            raise ValueError(f"split must be 'seeded' or 'reference', got {split!r}.")
        self.split_rule, self.target_suffix, self.query_agnostic = split, target_suffix, query_agnostic
        if keep not in ("last", "best"):
            raise ValueError(f"keep must be 'last' or 'best', got {keep!r}.")
        if keep == "best" and split == "seeded" and val_goals == 0:
            raise ValueError(
                "keep='best' picks the image by validation ASR: set val_goals > 0 (or split: reference)."
            )
        self.keep = keep
        self.checkpoint_every, self.resume, self.seed = checkpoint_every, resume, seed
        self.run_name = run_name or self.name
        self.accelerator, self.devices, self.strategy = accelerator, devices, strategy
        self.enable_progress_bar, self.trainer_kwargs = enable_progress_bar, dict(trainer_kwargs or {})
        self.module: PGDImageModule | None = None
        self.trainer: L.Trainer | None = None

    def run_dir(self, output_dir: Path) -> Path:
        return Path(output_dir) / self.run_name

    def clean_image(self, samples: list[EvalSample]) -> torch.Tensor:
        """The clean image at the processor's output size, ``uint8`` ``(3, H, W)``."""
        import numpy as np

        from reminder_lightning.vlm.adapter import PromptBuilder
        from reminder_lightning.vlm.pixels import processed_image

        source = self.image or next((s.image for s in samples if s.image is not None), None)
        if source is None:
            raise ValueError(
                f"{self.name}: no clean image: set `image` (a file), or attack samples that have images."
            )
        builder = PromptBuilder.load(self.vlm)
        image = processed_image(builder.family, builder.processor.image_processor, open_image(source))
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()

    def module_kwargs(self) -> dict[str, Any]:
        return {}

    def split(self, samples: list[EvalSample]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """(train, held-out) goal/target pairs; the held-out share is a seeded draw of ``val_goals`` (or the
        reference's validation 100, ``split: reference``)."""
        pairs = goal_target_pairs(samples, self.default_target, self.target_suffix)
        if self.query_agnostic:
            pairs = [{"goal": "", "target": p["target"]} for p in pairs]
        if self.split_rule == "reference":
            train, val, test = reference_split(len(pairs))
            self.parts = {"train": train, "validation": val, "test": test}
            return [pairs[i] for i in train], [pairs[i] for i in val]
        order = list(range(len(pairs)))
        random.Random(self.seed).shuffle(order)
        n_val = min(self.val_goals, max(len(pairs) - 1, 0))
        held = sorted(order[:n_val])
        self.parts = {"train": [i for i in range(len(pairs)) if i not in set(held)], "validation": held}
        train = [pairs[i] for i in range(len(pairs)) if i not in set(held)]
        if not train:
            raise ValueError(f"{self.name}: no goals to optimise on ({len(samples)} samples).")
        return train, [pairs[i] for i in held]

    def fit(self, samples: list[EvalSample], output_dir: Path) -> None:
        from lightning.pytorch.callbacks import ModelCheckpoint
        from lightning.pytorch.loggers import CSVLogger
        from torch.utils.data import DataLoader

        run_dir = self.run_dir(output_dir)
        train, held = self.split(samples)
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            parts = {name: [samples[i].judge_question for i in idx] for name, idx in self.parts.items()}
            (run_dir / "split.json").write_text(
                json.dumps({"rule": self.split_rule, "seed": self.seed, **parts}, indent=1)
            )
        clean = self.clean_image(samples)
        module = self.module_class(
            vlm=self.vlm,
            clean=clean,
            eps=self.eps,
            step_size=self.step_size,
            random_start=self.random_start,
            seed=self.seed,
            val_max_new_tokens=self.val_max_new_tokens,
            **self.module_kwargs(),
        )
        generator = torch.Generator().manual_seed(self.seed)
        train_loader = DataLoader(
            train, batch_size=self.batch_size, shuffle=True, generator=generator, collate_fn=collate_goals
        )
        val_loader = DataLoader(held, batch_size=self.batch_size, collate_fn=collate_goals) if held else None
        checkpoint = ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            save_last=True,
            save_top_k=0,
            every_n_train_steps=self.checkpoint_every,
        )
        kwargs: dict[str, Any] = {
            "logger": CSVLogger(run_dir, name="logs"),
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
            **self.trainer_kwargs,
        }
        callbacks = [checkpoint, *kwargs.pop("callbacks", [])]
        if self.enable_progress_bar:
            callbacks.append(StepProgressBar(f"{self.name} steps"))  # not Lightning's per-epoch "Epoch 9/-2"
        trainer = L.Trainer(
            accelerator=self.accelerator,
            devices=self.devices,
            strategy=self.strategy,
            max_steps=self.iterations,
            max_epochs=-1,
            callbacks=callbacks,
            val_check_interval=self.val_every,
            check_val_every_n_epoch=None,
            limit_val_batches=1.0 if held else 0,
            enable_progress_bar=self.enable_progress_bar,
            default_root_dir=run_dir,
            **kwargs,
        )
        last = run_dir / "checkpoints" / "last.ckpt"
        ckpt_path = str(last) if self.resume and last.exists() else None
        if ckpt_path:
            rank_zero_info(f"{self.name}: resuming from {last}")
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
        trainer.save_checkpoint(last)  # the final step, whatever checkpoint_every is
        self.module, self.trainer = module, trainer
        if trainer.is_global_zero:
            self.save(run_dir, module)
        trainer.strategy.barrier()  # every rank's apply() reads the PNG rank zero wrote

    def save(self, run_dir: Path, module: PGDImageModule) -> None:
        """``adversarial.png`` (lossless), ``clean.png`` and ``delta.safetensors``."""
        from safetensors.torch import save_file

        run_dir.mkdir(parents=True, exist_ok=True)
        best = self.keep == "best" and float(module.best_asr) >= 0
        if self.keep == "best" and not best:
            raise ValueError(
                f"{self.name}: keep='best' but no validation ran (val_goals={self.val_goals}, val_every="
                f"{self.val_every}, {self.iterations} iterations). Fix: validate at least once, or keep='last'."
            )
        kept = module.best_image if best else module.image
        levels_to_pil(kept.detach()).save(run_dir / "adversarial.png")
        module.adversarial_pil().save(run_dir / "last.png")
        levels_to_pil(module.clean).save(run_dir / "clean.png")
        delta = ((kept.detach() - module.clean) / 255.0).float().cpu().contiguous()
        meta = {
            "attack": self.name,
            "model": self.vlm.name_or_path,
            "eps": f"{self.eps}/255",
            "step_size": f"{self.step_size}/255",
            "steps": str(self.trainer.global_step if self.trainer else 0),
            "kept": f"best at step {int(module.best_step)}, val ASR {float(module.best_asr):.3f}"
            if best
            else "last",
        }
        save_file({"delta": delta}, str(run_dir / "delta.safetensors"), metadata=meta)

    def apply(self, samples: list[EvalSample], output_dir: Path) -> list[EvalSample]:
        """Every sample asked with the adversarial image; the prompt is the harmful question itself."""
        path = (self.run_dir(output_dir) / "adversarial.png").absolute()
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: run fit() first (the attack command does).")
        return [
            replace(
                s,
                benchmark=f"{s.benchmark}+{self.name}",
                prompt=s.judge_question,
                image=str(path),
                meta={**s.meta, "attack": self.name, "eps": f"{self.eps}/255"},
            )
            for s in samples
        ]
