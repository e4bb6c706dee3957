"""Attacks: one file each, all following :class:`~.base.Attack`.

An attack turns evaluation samples into attacked ones (new image and/or prompt), keeping the original
harmful request as ``judge_question`` so the judges always see what was really asked.
"""
