"""``python -m reminder_lightning.demo {prompts,records} ...``: the demo's own data steps (see :mod:`.prepare`)."""

from jsonargparse import auto_cli

from reminder_lightning.demo.prepare import prompts, records

if __name__ == "__main__":
    auto_cli([prompts, records], as_positional=False)
