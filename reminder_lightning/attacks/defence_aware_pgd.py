"""Defence-aware PGD: the universal adversarial image optimised through a baseline defence (the attack that knows it).

Adaptive PGD (:mod:`~reminder_lightning.attacks.adaptive_pgd`) knows the Safety Reminder: its artifact, gate and
schedule. A baseline is known by what it changes in the model's input, its
:meth:`~reminder_lightning.defences.base.Defence.attack_surface`: a prompt defence (Self-Reminder, AdaShield-S) by
its system prompt and the wording around the question, prompt tuning by its trained vectors before the answer. This
attack fits the image on the sequence the defended model sees, ``defended prompt(goal) + [vectors] + target``, so
the target is made likely *under* the defence, with the loss of plain PGD (the target's cross-entropy). Validation
(``val_goals``) measures ASR of the defended model's own generation.

A defence without an attack surface (ECSO answers in several passes; the Safety Reminder has its own adaptive
attacks) is refused with the reason when the model is built.
"""

from __future__ import annotations

from typing import Any

from reminder_lightning.attacks.pgd import PGDImageAttack, PGDImageModule
from reminder_lightning.types import import_class


def build_defence(spec: dict[str, Any]):
    """A defence from ``{class_path, init_args}`` (as ``compare`` and ``robustness`` list them)."""
    if "." not in str(spec.get("class_path", "")) or set(spec) - {"class_path", "init_args"}:
        raise ValueError(
            f"defence {spec} needs class_path (e.g. reminder_lightning.defences.prompting.SelfReminderDefence) and "
            "may have init_args."
        )
    return import_class(spec["class_path"])(**(spec.get("init_args") or {}))


class _DefendedGenerator:
    """The defence's own generation behind the ``generate(images, prompts, max_new_tokens)`` PGD validates with."""

    def __init__(self, defence):
        self.defence = defence

    def generate(self, images, prompts, max_new_tokens: int):
        from reminder_lightning.defences.base import DecodingSettings

        return self.defence.generate(images, prompts, DecodingSettings(max_new_tokens=max_new_tokens))


class DefenceAwarePGDModule(PGDImageModule):
    """:class:`PGDImageModule` asking every goal as the defence asks it, its vectors in place.

    Args:
        defence: ``{class_path, init_args}`` of the defence to optimise through.
        **kwargs: :class:`PGDImageModule` arguments.
    """

    def __init__(self, defence: dict[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.defence = self.surface = None

    def configure_model(self) -> None:
        if self.vlm is not None:
            return
        super().configure_model()
        self.defence = build_defence(self.hparams.defence)
        self.defence.setup(self.vlm)
        self.surface = self.defence.attack_surface()

    def encode_goal(self, goal: str, image):
        return self.surface.builder.encode_prompt(self.surface.wrap(goal), image)

    def forward_sequences(self, seqs, hidden: bool = False):
        with self.surface.context():
            return super().forward_sequences(seqs, hidden)

    def generator(self):
        return _DefendedGenerator(self.defence)


class DefenceAwarePGDAttack(PGDImageAttack):
    """PGD universal image fitted through a baseline defence (white box: the attacker knows the defence's prompts
    and trained vectors).

    Args:
        defence: ``{class_path, init_args}`` of the defence (``robustness`` sets it per defence for an attack marked
            ``adaptive``).
        **kwargs: :class:`PGDImageAttack` arguments (vlm, eps, iterations, ...).
    """

    name = "defence_aware_pgd"
    module_class = DefenceAwarePGDModule
    knows = "defence"  # robustness: pass the defence itself, not a reminder artifact

    def __init__(self, defence: dict[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        built = build_defence(defence)  # a wrong class path or argument fails here, before any model is loaded
        if not built.has_attack_surface():
            raise ValueError(
                f"{self.name}: {type(built).__name__} has no attack surface (its answer is not one forward pass over a "
                "changed input); the Safety Reminder is attacked by AdaptivePGDAttack, which knows its gate."
            )
        self.defence = {"class_path": defence["class_path"], "init_args": dict(defence.get("init_args") or {})}

    def module_kwargs(self) -> dict[str, Any]:
        return {"defence": self.defence}
