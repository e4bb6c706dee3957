"""The package's layers import one way (ARCHITECTURE.md): checked on the source, module by module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reminder_lightning"


def imports_of(folder: str) -> dict[str, set[str]]:
    """``{module file: every reminder_lightning / lightning module it imports}`` (top level and inside functions)."""
    out = {}
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        out[str(path.relative_to(PACKAGE))] = names
    return out


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module} imports {name}"
        for module, names in imports_of(folder).items()
        for name in names
        if name.startswith(forbidden)
    ]


def test_data_never_imports_training_or_evaluation():
    assert offenders("data", ("reminder_lightning.training", "reminder_lightning.evaluation")) == []


def test_evaluation_never_imports_attacks_or_callbacks():
    assert offenders("evaluation", ("reminder_lightning.attacks", "reminder_lightning.callbacks")) == []


def test_the_reminder_package_needs_no_lightning_and_nothing_above_it():
    above = (
        "lightning",
        "reminder_lightning.training",
        "reminder_lightning.data",
        "reminder_lightning.evaluation",
    )
    assert offenders("reminder", above) == []


def test_the_check_is_real():
    """The scan sees imports inside functions too (a lazy import is still a dependency)."""
    lazy = imports_of("callbacks")["callbacks/periodic_eval.py"]
    assert "reminder_lightning.reminder.generation" in lazy  # imported inside reminder_generator()
    assert "reminder_lightning.data.sapt" in imports_of("training")["training/loss.py"]
