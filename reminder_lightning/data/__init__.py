"""Data: records, record sources (plug-ins) and the SAPT data module.

The dataset-specific sources are imported here so ``--data.harmful.help`` lists them as known subclasses.
"""

from reminder_lightning.data import spa_vl, vlsafe  # noqa: F401  (registers the plug-ins for --help)
