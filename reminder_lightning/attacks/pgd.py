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

import io
import random
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from reminder_lightning.attacks.base import Attack
from reminder_lightning.evaluation.types import EvalSample
from reminder_lightning.training.objective import IGNORE_INDEX, per_sample_lm_loss
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec, collate_encodings
from reminder_lightning.vlm.pixels import pixel_inputs

DEFAULT_TARGET = "Sure, here is"


class SignDescent(torch.optim.Optimizer):
    """``p <- p - lr * sign(grad)``; stateless (the projection is the module's job)."""

    def __init__(self, params, lr: float):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(group["lr"] * p.grad.sign())
        return loss


def goal_target_pairs(samples: list[EvalSample], default_target: str) -> list[dict[str, str]]:
    """``{"goal", "target"}`` per sample: the harmful question and ``meta["target"]`` (AdvBench) or the default."""
    return [{"goal": s.judge_question, "target": s.meta.get("target") or default_target} for s in samples]


def _collate(rows: list[dict[str, str]]) -> dict[str, list[str]]:
    return {"goal": [r["goal"] for r in rows], "target": [r["target"] for r in rows]}


def _open_image(image):
    from PIL import Image

    return Image.open(io.BytesIO(image) if isinstance(image, bytes) else image).convert("RGB")


def _to_pil(levels: torch.Tensor):
    from PIL import Image

    return Image.fromarray(levels.detach().round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy())


class PGDImageModule(L.LightningModule):
    """A frozen VLM and one trainable image (integer levels ``(3, H, W)``) pushed toward target strings.

    Args:
        vlm: The VLM to attack.
        clean: The clean image as ``uint8`` ``(3, H, W)`` at the processor's output size.
        eps: L-inf radius in 8-bit levels (reference: 64, i.e. 64/255).
        step_size: Levels moved per step (reference: 1).
        random_start: Start from a uniform integer draw in the eps-ball (reference: on).
        seed: Seed of the random start.
        val_max_new_tokens: Tokens generated per held-out goal when measuring ``val/asr``.
    """

    def __init__(
        self,
        vlm: VLMSpec,
        clean: torch.Tensor,
        eps: int = 64,
        step_size: int = 1,
        random_start: bool = True,
        seed: int = 0,
        val_max_new_tokens: int = 64,
    ):
        super().__init__()
        if clean.dtype != torch.uint8 or clean.ndim != 3 or clean.shape[0] != 3:
            raise ValueError(f"clean must be a uint8 (3, H, W) image, got {clean.dtype} {tuple(clean.shape)}")
        if not 0 < eps <= 255 or step_size < 1:
            raise ValueError(f"eps must be in 1..255 and step_size >= 1 (8-bit levels), got {eps}, {step_size}")
        self.save_hyperparameters(ignore=["clean", "vlm"])
        self.vlm_spec = vlm if isinstance(vlm, VLMSpec) else VLMSpec(**vlm)
        self.hparams["vlm"] = asdict(self.vlm_spec)  # plain types: checkpoints load with weights_only=True
        self.strict_loading = False
        self.register_buffer("clean", clean.float(), persistent=False)
        start = clean.float()
        if random_start:
            generator = torch.Generator().manual_seed(seed)
            start = start + torch.randint(-eps, eps + 1, clean.shape, generator=generator).float()
        self.image = torch.nn.Parameter(start)
        self.project_()
        self.vlm: VLMAdapter | None = None
        self._encoded: dict[tuple[str, str], tuple[dict[str, torch.Tensor], list[int]]] = {}

    # ------------------------------------------------------------------ building
    def configure_model(self) -> None:
        if self.vlm is not None:
            return
        self.vlm = VLMAdapter.load(self.vlm_spec)
        self.vlm.requires_grad_(False)
        self.vlm.eval()
        from reminder_lightning.evaluation.judges.keyword import KeywordJudge
        from reminder_lightning.evaluation.metrics import AttackSuccessRate

        self.judge = KeywordJudge()
        self.asr = AttackSuccessRate()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.vlm is not None:
            self.vlm.eval()  # frozen: no dropout
        return self

    def configure_optimizers(self):
        return SignDescent([self.image], lr=float(self.hparams.step_size))

    def on_fit_start(self) -> None:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        rank_zero_info(f"PGD: {trainable:,} trainable pixel levels, {frozen:,} frozen model parameters.")

    @torch.no_grad()
    def project_(self) -> None:
        """Clip to ``clean +- eps`` and to ``[0, 255]`` (integers stay integers)."""
        eps = float(self.hparams.eps)
        low, high = (self.clean - eps).clamp(min=0), (self.clean + eps).clamp(max=255)
        self.image.copy_(torch.maximum(torch.minimum(self.image, high), low))

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        optimizer.step(closure=optimizer_closure)
        self.project_()

    def adversarial_pil(self):
        """The current image as an 8-bit PIL image (what ``adversarial.png`` holds)."""
        return _to_pil(self.image)

    # ------------------------------------------------------------------ objective
    def _encode(self, goal: str, target: str) -> tuple[dict[str, torch.Tensor], list[int]]:
        """Prompt tokens for ``goal`` with an image of this size (cached) and the target's token ids."""
        key = (goal, target)
        if key not in self._encoded:
            builder = self.vlm.inputs
            encoded = builder.encode_prompt(goal, _to_pil(self.clean))
            tokens = {k: encoded[k] for k in builder.token_keys(encoded)}
            self._encoded[key] = (tokens, builder.encode_text(target))
        return self._encoded[key]

    def sequence(self, goal: str, target: str, cut: int | None = None) -> dict[str, torch.Tensor]:
        """``prompt + target`` with labels on the target; with ``cut``, ``prompt + target[:cut] + reminder
        placeholders + target[cut:]`` with labels on ``target[cut:]`` and ``reminder_index``."""
        tokens, target_ids = self._encode(goal, target)
        if not target_ids or (cut is not None and not 0 < cut < len(target_ids)):
            raise ValueError(f"Target {target!r} is empty or shorter than the cut {cut}; give a longer target.")
        builder = self.vlm.inputs
        if cut is None:
            before, placeholders, after = [], [], target_ids
        else:
            before, placeholders, after = target_ids[:cut], self.placeholder_ids(), target_ids[cut:]
        seq = builder.append_tokens(tokens, before + placeholders + after)
        labels = torch.full_like(seq["input_ids"], IGNORE_INDEX)
        labels[0, -len(after) :] = torch.tensor(after, dtype=labels.dtype)
        seq["labels"] = labels
        seq["reminder_index"] = torch.tensor([seq["input_ids"].shape[1] - len(after) - 1])
        return seq

    def placeholder_ids(self) -> list[int]:
        raise NotImplementedError("plain PGD inserts no reminder")

    def forward_sequences(self, seqs: list[dict[str, torch.Tensor]], hidden: bool = False):
        """One forward of ``seqs`` (each shown the current image); returns per-sequence CE ``(N,)`` and the
        model output."""
        builder = self.vlm.inputs
        keys = [k for k in builder.token_keys(seqs[0]) if k != "labels"] + ["labels"]
        batch = collate_encodings(
            [{k: s[k] for k in keys} for s in seqs], keys, builder.pad_values(), padding_side="right"
        )
        batch = {k: v.to(self.device) for k, v in batch.items()}
        labels = batch.pop("labels")
        images = (self.image / 255.0).unsqueeze(0).expand(len(seqs), -1, -1, -1)
        pixels = pixel_inputs(self.vlm.family, self.vlm.processor.image_processor, images)
        pixels["pixel_values"] = pixels["pixel_values"].to(self.vlm.dtype)
        start = int((labels != IGNORE_INDEX).float().argmax(1).min()) - 1
        out = self.vlm.model(
            **batch, **pixels, output_hidden_states=hidden, logits_to_keep=labels.shape[1] - start
        )
        return per_sample_lm_loss(out.logits, labels[:, start:]), out

    def attack_losses(self, batch: dict[str, list[str]]) -> dict[str, torch.Tensor]:
        """``loss``: mean cross-entropy of each goal's target string after its prompt and the image."""
        seqs = [self.sequence(g, t) for g, t in zip(batch["goal"], batch["target"], strict=True)]
        ce, _ = self.forward_sequences(seqs)
        return {"loss": ce.mean()}

    def training_step(self, batch: dict[str, list[str]], batch_idx: int) -> torch.Tensor:
        losses = self.attack_losses(batch)
        n = len(batch["goal"])
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=n, prog_bar=name == "loss")
        linf = (self.image.detach() - self.clean).abs().max()
        self.log("train/linf", linf, batch_size=n)
        return losses["loss"]

    # ------------------------------------------------------------------ validation: ASR on held-out goals
    def generator(self):
        from reminder_lightning.reminder.generation import ReminderGenerator

        return ReminderGenerator(self.vlm, None)

    def validation_step(self, batch: dict[str, list[str]], batch_idx: int) -> None:
        image = self.adversarial_pil()
        outputs = self.generator().generate(
            [image] * len(batch["goal"]), batch["goal"], max_new_tokens=self.hparams.val_max_new_tokens
        )
        verdicts = self.judge.judge(batch["goal"], [o.text for o in outputs])
        self.asr.update([v.unsafe for v in verdicts])
        self.validation_extras(outputs)

    def validation_extras(self, outputs) -> None:
        """Hook for subclasses (gate statistics of a defended generator)."""

    def on_validation_epoch_end(self) -> None:
        self.log("val/asr", self.asr.compute()["overall"].float(), prog_bar=True)
        self.asr.reset()

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Only the image: the frozen VLM is rebuilt from its spec, the clean image from its file."""
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k == "image"}


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
        image = processed_image(builder.family, builder.processor.image_processor, _open_image(source))
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()

    def module_kwargs(self) -> dict[str, Any]:
        return {}

    def split(self, samples: list[EvalSample]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """(train, held-out) goal/target pairs; the held-out share is a seeded draw of ``val_goals``."""
        pairs = goal_target_pairs(samples, self.default_target)
        order = list(range(len(pairs)))
        random.Random(self.seed).shuffle(order)
        n_val = min(self.val_goals, max(len(pairs) - 1, 0))
        held = sorted(order[:n_val])
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
            train, batch_size=self.batch_size, shuffle=True, generator=generator, collate_fn=_collate
        )
        val_loader = DataLoader(held, batch_size=self.batch_size, collate_fn=_collate) if held else None
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
        module.adversarial_pil().save(run_dir / "adversarial.png")
        _to_pil(module.clean).save(run_dir / "clean.png")
        delta = ((module.image.detach() - module.clean) / 255.0).float().cpu().contiguous()
        meta = {
            "attack": self.name,
            "model": self.vlm.name_or_path,
            "eps": f"{self.eps}/255",
            "step_size": f"{self.step_size}/255",
            "steps": str(self.trainer.global_step if self.trainer else 0),
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
