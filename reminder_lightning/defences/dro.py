"""DRO, directed representation optimisation of a safety prompt (Zheng et al., "On Prompt-Driven Safeguarding for
Large Language Models", ICML 2024), as the Safety Reminder's reference code trains it for VLMs.

Trainable vectors (a continuous safety prompt) are optimised so that they move the model's representation of a
query along two fixed directions, read by two probes fitted beforehand on the undefended model's prompt-end states:

* a harmfulness probe (the ``probe`` command's prompt-end probe: log-odds that the query is benign): harmful
  queries must move towards harmful, benign ones towards benign;
* a refusal probe (log-odds that the model refuses): harmful queries must move towards refusal, benign ones away
  from it;

plus a penalty on how far the representation moves inside the harmfulness probe's PCA space. The loss (the
reference's weights): ``BCE(d_harm, is_safe) + 1e-2 * BCE(d_refusal, 1 - is_safe) + 1e-3 * ||P(h_new) - P(h_base)||^2``
where ``d = logit(h_new) - logit(h_base)``. No answer tokens are trained towards.

Placement and format are prompt tuning's (:mod:`reminder_lightning.defences.prompt_tuning`): the vectors sit before
the answer, ``h_new`` is the state at the last vector (where the answer is generated from) and ``h_base`` the state
at the last prompt token of the same forward pass (causal attention: it never sees the vectors, so it is the
undefended state); the result is a peft adapter that :class:`~reminder_lightning.defences.prompt_tuning.
PromptTuningDefence` decodes with. The reference places the vectors at the start of the question and reads the last
prompt token; here every baseline with trained vectors shares one placement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reminder_lightning.defences.prompt_tuning import PromptTuningObjective
from reminder_lightning.reminder.artifact import load_probe
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.training.objectives import BATCH_EXTRAS


class DROObjective(PromptTuningObjective):
    """DRO's loss on the shared ``fit`` machinery; written as a peft prompt-tuning adapter.

    Args:
        harmfulness_probe: Probe file whose logit is the log-odds that a query is benign, at the prompt end of the
            undefended model (``python -m reminder_lightning probe``, ``position: prompt_end``).
        refusal_probe: Probe file whose logit is the log-odds that the model refuses the query, at the same
            position: ``probe`` with ``harmful`` = :class:`~reminder_lightning.data.judged_answers.JudgedAnswers`
            ``(run_dir, refused: false)`` and ``benign`` = ``JudgedAnswers(run_dir, refused: true)`` over an
            undefended ``test`` run (the reference labels its model's own answers the same way).
        refusal_weight: Weight of the refusal term (reference: 1e-2).
        norm_weight: Weight of the movement penalty (reference: 1e-3).
    """

    name = "dro"
    default_export_name = "dro"

    def __init__(
        self, harmfulness_probe: str, refusal_probe: str, refusal_weight: float = 1e-2, norm_weight: float = 1e-3
    ):
        super().__init__()
        if refusal_weight < 0 or norm_weight < 0:
            raise ValueError(f"DRO weights must be >= 0, got refusal {refusal_weight}, norm {norm_weight}")
        self.paths = {"harmfulness": harmfulness_probe, "refusal": refusal_probe}
        self.refusal_weight, self.norm_weight = refusal_weight, norm_weight
        self.probes: dict[str, SafetyProbe] = {}

    def setup(self, module) -> None:
        super().setup(module)
        for name, path in self.paths.items():
            probe = load_probe(path)
            if probe.hidden_size != module.vlm.hidden_size:
                raise ValueError(
                    f"DRO {name}_probe {path} reads width {probe.hidden_size}, the model's hidden size is "
                    f"{module.vlm.hidden_size}: it was fitted on another model. Fix: fit it on this one."
                )
            self.probes[name] = probe.to(module.vlm.device)

    def losses(self, module, batch):
        inputs = {k: v for k, v in batch.items() if k not in BATCH_EXTRAS}
        new_at = batch["reminder_index"]
        base_at = new_at - module.soft_prompt.num_tokens  # the last prompt token, before the vectors
        out = module.vlm.model(**inputs, output_hidden_states=True, logits_to_keep=1)
        rows = torch.arange(new_at.shape[0], device=new_at.device)
        is_safe = batch["is_safe"].float()
        terms = {}
        for name, probe in self.probes.items():
            hidden = probe.select(out.hidden_states)
            base, new = hidden[rows, base_at].detach(), hidden[rows, new_at]
            target = is_safe if name == "harmfulness" else 1.0 - is_safe
            terms[f"{name}_loss"] = F.binary_cross_entropy_with_logits(
                probe.logit(new) - probe.logit(base), target
            )
            if name == "harmfulness":
                project = probe.components.T
                moved = (new.float() - probe.mean) @ project - (base.float() - probe.mean) @ project
                terms["norm_loss"] = moved.pow(2).mean()
        loss = terms["harmfulness_loss"] + self.refusal_weight * terms["refusal_loss"]
        terms["loss"] = loss + self.norm_weight * terms["norm_loss"]
        return terms
