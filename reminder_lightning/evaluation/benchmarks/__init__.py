"""Benchmark loaders: one small file each, all following :class:`~.base.Benchmark`."""
