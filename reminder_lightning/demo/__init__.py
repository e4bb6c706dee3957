"""The offline end-to-end demo: a real small LM (SmolLM2-135M-Instruct), real prompts shipped in PyPI packages.

Only what is demo-specific lives here (the prompt split, typographic images, SAPT records from the model's own
answers); ``make demo`` runs ``scripts/demo.sh``, a chain of the commands every user runs.
"""
