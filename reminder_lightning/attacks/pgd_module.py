"""The Lightning side of the PGD image attacks: :class:`PGDImageModule` (a frozen VLM and one trainable image)
and its sign-descent optimiser. :class:`~reminder_lightning.attacks.pgd.PGDImageAttack` builds and runs it; see
that module for the attack itself.

The image lives on the 8-bit grid: the trainable tensor holds integer levels 0..255 (float32 so autograd
reaches it), the random start draws integers, a step moves every level by ``step_size`` against the sign of
the gradient, and the projection clips to ``clean +- eps`` and to ``[0, 255]``. Saved as PNG it is therefore
exactly what was optimised.
"""

from __future__ import annotations

import io
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from reminder_lightning.data.sapt import IGNORE_INDEX
from reminder_lightning.training.loss import per_sample_lm_loss
from reminder_lightning.types import EvalSample
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec
from reminder_lightning.vlm.collate import collate_encodings
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


def collate_goals(rows: list[dict[str, str]]) -> dict[str, list[str]]:
    return {"goal": [r["goal"] for r in rows], "target": [r["target"] for r in rows]}


def open_image(image):
    from PIL import Image

    return Image.open(io.BytesIO(image) if isinstance(image, bytes) else image).convert("RGB")


def levels_to_pil(levels: torch.Tensor):
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
        # The image with the highest validation ASR so far (ties: the later one, as the reference keeps it).
        self.register_buffer("best_image", self.image.detach().clone())
        self.register_buffer("best_asr", torch.tensor(-1.0))
        self.register_buffer("best_step", torch.tensor(-1))
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
        return levels_to_pil(self.image)

    # ------------------------------------------------------------------ objective
    def _encode(self, goal: str, target: str) -> tuple[dict[str, torch.Tensor], list[int]]:
        """Prompt tokens for ``goal`` with an image of this size (cached) and the target's token ids."""
        key = (goal, target)
        if key not in self._encoded:
            builder = self.vlm.inputs
            encoded = self.encode_goal(goal, levels_to_pil(self.clean))
            tokens = {k: encoded[k] for k in builder.token_keys(encoded)}
            self._encoded[key] = (tokens, builder.encode_text(target))
        return self._encoded[key]

    def encode_goal(self, goal: str, image) -> dict[str, torch.Tensor]:
        """The prompt the model is asked for ``goal`` (a subclass that knows a defence asks as the defence does)."""
        return self.vlm.inputs.encode_prompt(goal, image)

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
        asr = self.asr.compute()["overall"].float()
        self.log("val/asr", asr, prog_bar=True)
        self.asr.reset()
        if not self.trainer.sanity_checking and float(asr) >= float(self.best_asr):
            self.best_image.copy_(self.image.detach())
            self.best_asr.fill_(float(asr))
            self.best_step.fill_(int(self.trainer.global_step))

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Only the image: the frozen VLM is rebuilt from its spec, the clean image from its file."""
        keep = ("image", "best_image", "best_asr", "best_step")
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}


def goal_target_pairs(samples: list[EvalSample], default_target: str, suffix: str = "") -> list[dict[str, str]]:
    """``{"goal", "target"}`` per sample: the harmful question and ``meta["target"]`` (AdvBench) or the default, with
    ``suffix`` appended (the reference appends ``": 1. To"``)."""
    return [
        {"goal": s.judge_question, "target": (s.meta.get("target") or default_target) + suffix} for s in samples
    ]
