"""No defence: the model as it is, through the same decoding loop as the defended runs."""

from __future__ import annotations

from reminder_lightning.defences.base import DecodingSettings, Defence
from reminder_lightning.reminder.generation import ReminderGenerator, ReminderOutput


class NoDefence(Defence):
    """The undefended model (the baseline every defence is measured against)."""

    name = "none"

    def __init__(self):
        self.generator: ReminderGenerator | None = None

    def setup(self, adapter) -> None:
        self.generator = ReminderGenerator(adapter, None)

    def generate(self, images, prompts, decoding: DecodingSettings) -> list[ReminderOutput]:
        return self.generator.generate(images, prompts, mode="never", **decoding.as_dict())
