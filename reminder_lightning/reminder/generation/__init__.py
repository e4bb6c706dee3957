"""Gated periodic injection over the KV cache: the Safety Reminder at inference.

* :mod:`.config`: decoding settings (with the :class:`~reminder_lightning.reminder.schedule.ReminderSchedule`),
  per-sample outputs and stream events;
* :mod:`.steps`: the pure steps the loop is made of (pick a token, run a check, decide the gate);
* :mod:`.generator`: :class:`ReminderGenerator`, the loop.
"""

from reminder_lightning.reminder.generation.config import (
    DecodingSettings,
    ReminderGenerationConfig,
    ReminderOutput,
    StepEvent,
)
from reminder_lightning.reminder.generation.generator import ReminderGenerator

__all__ = ["DecodingSettings", "ReminderGenerationConfig", "ReminderGenerator", "ReminderOutput", "StepEvent"]
