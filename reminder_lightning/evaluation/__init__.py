"""Evaluation: benchmarks (prompt sets), judges (is this answer harmful? a refusal?), metrics, the run."""
