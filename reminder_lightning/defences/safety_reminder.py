"""The Safety Reminder from a trained artifact."""

from __future__ import annotations

from typing import Literal

from reminder_lightning.defences.base import DecodingSettings, Defence
from reminder_lightning.reminder.api import SafetyReminder
from reminder_lightning.reminder.generation import ReminderGenerator, ReminderOutput


class SafetyReminderDefence(Defence):
    """Gated periodic injection of a trained reminder.

    Args:
        artifact: ``reminder.safetensors`` (soft prompt, probe, defaults).
        mode: ``gated`` / ``always`` / ``never``; default: the artifact's (``gated`` with a probe).
        interval: Check interval; default: the artifact's.
        threshold: Gate threshold; default: the artifact's.
        keep_checking_after_flag: Keep checking after a flag.
        return_text: ``full`` (what the user sees, judged by default) or ``after_reminder`` (the reference).
    """

    name = "safety_reminder"

    def __init__(
        self,
        artifact: str,
        mode: Literal["gated", "always", "never"] | None = None,
        interval: int | None = None,
        threshold: float | None = None,
        keep_checking_after_flag: bool = False,
        return_text: Literal["full", "after_reminder"] = "full",
    ):
        self.artifact = artifact
        overrides = {"mode": mode, "interval": interval, "threshold": threshold}
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self.overrides.update(keep_checking_after_flag=keep_checking_after_flag, return_text=return_text)
        self.reminder: SafetyReminder | None = None
        self.generator: ReminderGenerator | None = None

    def setup(self, adapter) -> None:
        self.reminder = SafetyReminder.load(self.artifact, **self.overrides)
        self.generator = self.reminder.generator(adapter)

    def generate(self, images, prompts, decoding: DecodingSettings) -> list[ReminderOutput]:
        return self.generator.generate(images, prompts, **decoding.as_dict())

    def describe(self) -> dict:
        cfg = self.reminder.config if self.reminder is not None else None
        out = {"name": self.name, "artifact": self.artifact}
        if cfg is not None:
            schedule = cfg.schedule
            out.update(
                mode=schedule.mode.value,
                interval=schedule.interval,
                threshold=schedule.threshold,
                return_text=cfg.return_text,
            )
        return out
