"""The Safety Reminder itself, usable without Lightning: soft prompt, injection, probe, artifact."""

from reminder_lightning.reminder.api import SafetyReminder
from reminder_lightning.reminder.artifact import ReminderArtifact, load_reminder, save_reminder
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.generation import ReminderGenerationConfig, ReminderGenerator, ReminderOutput
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.soft_prompt import DEFAULT_INIT_TEXT, SoftPrompt

__all__ = [
    "DEFAULT_INIT_TEXT",
    "ReminderArtifact",
    "ReminderGenerationConfig",
    "ReminderGenerator",
    "ReminderOutput",
    "SafetyReminder",
    "ReminderInjector",
    "SafetyProbe",
    "SoftPrompt",
    "load_reminder",
    "save_reminder",
]
