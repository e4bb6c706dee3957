"""Judges: one file each, all following :class:`~.base.Judge`."""
