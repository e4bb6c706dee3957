"""reminder_lightning: the Safety Reminder for vision-language models, on PyTorch Lightning."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: `import reminder_lightning` stays cheap, `from reminder_lightning import SafetyReminder` works.
    if name == "SafetyReminder":
        from reminder_lightning.reminder.api import SafetyReminder

        return SafetyReminder
    raise AttributeError(f"module 'reminder_lightning' has no attribute {name!r}")
