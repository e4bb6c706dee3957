"""Defences under evaluation: one small file each, all following :class:`~.base.Defence`.

``none.NoDefence`` and ``safety_reminder.SafetyReminderDefence`` are ours; baselines from the literature
go beside them.
"""
