"""The Safety Reminder from a trained artifact."""

from __future__ import annotations

from typing import Literal

from reminder_lightning.defences.base import DecodingSettings, Defence
from reminder_lightning.reminder.api import SafetyReminder
from reminder_lightning.reminder.artifact import file_sha256
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
        refusal_room: Tokens an answer may still generate after its kept reminder, past the decoding budget if need
            be (0: the budget is hard; see :class:`~reminder_lightning.reminder.generation.ReminderGenerationConfig`).
        fallback_margin: Keep the reminder also where P(safe) is above the threshold by less than this many
            log-odds (the gate is unsure); default: the artifact's (0, off).
        jitter: Randomised check positions (one per interval window, drawn per prompt with the decoding seed);
            default: the artifact's (see :class:`~reminder_lightning.reminder.schedule.ReminderSchedule`).
        check_at_end: One more check where an answer ends after tokens no check has read; default: the artifact's.
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
        refusal_room: int = 0,
        jitter: bool | None = None,
        fallback_margin: float | None = None,
        check_at_end: bool | None = None,
    ):
        self.artifact = artifact
        overrides = {
            "mode": mode,
            "interval": interval,
            "threshold": threshold,
            "jitter": jitter,
            "fallback_margin": fallback_margin,
            "check_at_end": check_at_end,
        }
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self.overrides.update(
            keep_checking_after_flag=keep_checking_after_flag, return_text=return_text, refusal_room=refusal_room
        )
        self.reminder: SafetyReminder | None = None
        self.sha256: str | None = None
        self.generator: ReminderGenerator | None = None

    def load(self) -> SafetyReminder:
        """The artifact (validated) with this defence's overrides; loaded once."""
        if self.reminder is None:
            self.reminder = SafetyReminder.load(self.artifact, **self.overrides)
            self.sha256 = file_sha256(self.artifact)
        return self.reminder

    def setup(self, adapter) -> None:
        self.generator = self.load().generator(adapter)

    def generate(self, images, prompts, decoding: DecodingSettings) -> list[ReminderOutput]:
        return self.generator.generate(images, prompts, **decoding.as_dict())

    def describe(self) -> dict:
        """Name, artifact (path and SHA-256 of the file), and the settings in force (recorded with every answer:
        a results folder made with another artifact or threshold is refused on resume)."""
        cfg = self.load().config
        schedule = cfg.schedule
        return {
            "name": self.name,
            "artifact": self.artifact,
            "artifact_sha256": self.sha256,
            "mode": schedule.mode.value,
            "interval": schedule.interval,
            "threshold": schedule.threshold,
            **({"jitter": True} if schedule.jitter else {}),  # recorded only when on: older folders stay valid
            **({"fallback_margin": schedule.fallback_margin} if schedule.fallback_margin else {}),
            **({"check_at_end": True} if schedule.check_at_end else {}),
            "return_text": cfg.return_text,
            "refusal_room": cfg.refusal_room,
        }
