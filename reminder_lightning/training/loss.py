"""The language-model term of SAPT (and of the optimising attacks): per-sample cross-entropy on labelled tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reminder_lightning.data.sapt import IGNORE_INDEX


def per_sample_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each sample over its labelled tokens, ``(B,)``.

    ``logits`` ``(B, T, V)`` predict ``labels`` ``(B, T)`` shifted by one (position t predicts t+1).
    A per-sample mean (rather than one token mean over the batch) makes the loss of a global batch
    split over DDP ranks equal to the loss of the same batch on one device.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    losses = F.cross_entropy(
        shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    counts = (shift_labels != IGNORE_INDEX).sum(1)
    if bool((counts == 0).any()):
        raise ValueError("A training sample has no target tokens: every label is -100 after the reminder.")
    return losses.sum(1) / counts
