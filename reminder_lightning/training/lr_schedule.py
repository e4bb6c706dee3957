"""Learning-rate schedules for the reminder's optimiser, sized from the trainer's own step count.

SAPT trains a few thousand parameters for a few hundred steps at a high learning rate; with a constant rate the
last step is wherever the optimiser happened to be, so two training seeds end at different points of their noise.
A schedule that decays to zero ends each run at a settled point. The total is ``trainer.estimated_stepping_batches``
(epochs, accumulation and limits included), so a config never restates it.
"""

from __future__ import annotations

import math
from enum import Enum

import torch


class LRSchedule(str, Enum):
    constant = "constant"  # the reference: the optimiser's rate throughout
    cosine = "cosine"  # linear warm-up, then half a cosine down towards 0 (reached one step after the last)
    linear = "linear"  # linear warm-up, then a straight line down towards 0 (reached one step after the last)


def lr_factor(schedule: LRSchedule, step: int, total: int, warmup: int) -> float:
    """The multiplier of the base learning rate at optimisation step ``step`` (0-based) of ``total``."""
    schedule = LRSchedule(schedule)
    if schedule is LRSchedule.constant:
        return 1.0
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule is LRSchedule.cosine:
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: LRSchedule, total_steps: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler; ``warmup_fraction`` in [0, 1) is checked where the module is built."""
    if total_steps < 1:
        raise ValueError(
            f"The learning-rate schedule needs the number of training steps, got {total_steps}: set trainer.max_epochs "
            "or trainer.max_steps."
        )
    warmup = int(round(warmup_fraction * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, step, total_steps, warmup)
    )
