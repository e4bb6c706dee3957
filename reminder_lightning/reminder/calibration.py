"""Gate calibration, part one: the hidden states where the gate reads, and the candidate probes fitted on them.

The reference fits its probe on prompt-end states without any reminder, then applies it at the last reminder
token inside the answer. Calibration reads where the generator checks instead: the hidden state at the last
reminder token after the first ``c`` tokens of an answer, for every check point ``c`` of the
:class:`~reminder_lightning.reminder.schedule.ReminderSchedule` (15, 31, 47, ...). Candidates are probes refitted
on training answers for each layer x PCA size (plus any given probe, e.g. the one SAPT trained with). A sample is
flagged when *any* of its checks falls below the threshold (the generator stops checking after the first flag), so
an answer's score is the lowest P(safe) over its checks. Choosing a candidate and its threshold on validation
answers is :mod:`reminder_lightning.reminder.gate_selection`.

Nothing here imports Lightning: the ``probe`` command and the :class:`ProbeCalibration` callback both call it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from reminder_lightning.reminder.detector import LayerSpec, SafetyProbe, layer_list, layer_name
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.probe_fitting import Position, collect_hidden_states
from reminder_lightning.reminder.schedule import ReminderSchedule
from reminder_lightning.vlm.adapter import VLMAdapter


@dataclass
class CheckStates:
    """Hidden states of a set of answers at their check points.

    Attributes:
        hidden: ``(N, len(layers), H)`` fp32 states, one row per check.
        sample: ``(N,)`` index of the answer each check belongs to.
        step: ``(N,)`` answer tokens before the reminder (0: right after the prompt).
        layers: The ``hidden_states`` entries in ``hidden``'s second dimension.
        num_samples: How many answers (some may have no check: they can never be flagged).
    """

    hidden: torch.Tensor
    sample: torch.Tensor
    step: torch.Tensor
    layers: list[int]
    num_samples: int

    def layer(self, index: int) -> torch.Tensor:
        """``(N, H)`` states of one ``hidden_states`` entry."""
        if index not in self.layers:
            raise ValueError(f"Layer {index} was not collected (have {self.layers}).")
        return self.hidden[:, self.layers.index(index)]

    def select(self, spec: LayerSpec) -> torch.Tensor:
        """What a probe with layer ``spec`` reads: ``(N, H)`` for one entry, ``(N, k x H)`` for ``k`` concatenated."""
        layers = layer_list(spec)
        return self.layer(layers[0]) if isinstance(spec, int) else torch.cat([self.layer(i) for i in layers], -1)

    def subset(self, samples: torch.Tensor | list[int]) -> CheckStates:
        """The checks of the answers ``samples`` (indices), renumbered ``0..len(samples)-1`` in that order."""
        samples = torch.as_tensor(samples, dtype=torch.long)
        new_index = torch.full((self.num_samples,), -1, dtype=torch.long)
        new_index[samples] = torch.arange(len(samples))
        keep = new_index[self.sample] >= 0
        return CheckStates(
            self.hidden[keep], new_index[self.sample[keep]], self.step[keep], list(self.layers), len(samples)
        )

    @staticmethod
    def concat(parts: list[CheckStates]) -> CheckStates:
        """One set of answers from several (the same layers), numbered in order."""
        if any(p.layers != parts[0].layers for p in parts):
            raise ValueError(f"Cannot pool check states of different layers: {[p.layers for p in parts]}")
        offsets = torch.tensor([0] + [p.num_samples for p in parts[:-1]]).cumsum(0)
        return CheckStates(
            torch.cat([p.hidden for p in parts]),
            torch.cat([p.sample + o for p, o in zip(parts, offsets.tolist(), strict=True)]),
            torch.cat([p.step for p in parts]),
            list(parts[0].layers),
            sum(p.num_samples for p in parts),
        )


def collect_check_states(
    adapter: VLMAdapter,
    questions: list[str],
    images: list | None,
    answers: list[list[int]] | None,
    layers: list[int],
    position: Position = "reminder",
    injector: ReminderInjector | None = None,
    schedule: ReminderSchedule | None = None,
    batch_size: int = 8,
    desc: str = "check states",
    max_new_tokens: int | None = None,
    seed: int = 0,
) -> CheckStates:
    """States at every check point of every answer (``answers``: the answer's token ids without the end-of-answer
    token, with ``schedule``), or one state per question at ``position`` right after the prompt (``answers`` None).

    As in generation, a check follows the ``c``-th answer token when the answer has at least ``c`` tokens and
    ``c < max_new_tokens`` (the decoding budget; None: no limit), and, with ``check_at_end``, at the end of an answer
    that ended inside the budget (:meth:`ReminderSchedule.end_point`). With a ``jitter`` schedule the points of each
    answer are drawn as generation draws them with decoding seed ``seed`` (a generator seeded by the seed and the
    question), so states are read where a check of that answer would fall."""
    if answers is not None and (schedule is None or position != "reminder"):
        raise ValueError(
            "Answer check points need position='reminder' and the schedule that says where checks fall."
        )
    owner, steps, q, im, prefixes = [], [], [], [], []
    for i, question in enumerate(questions):
        if answers is None:
            points = [0]
        else:
            limit = len(answers[i]) + 1 if max_new_tokens is None else min(len(answers[i]) + 1, max_new_tokens)
            rng = random.Random(f"{seed}:{question}") if schedule.jitter else None
            points = schedule.check_points(limit, rng)
            ended = max_new_tokens is None or len(answers[i]) < max_new_tokens
            end = schedule.end_point(len(answers[i]), points) if ended else None
            points += [end] if end is not None else []
        for c in points:
            owner.append(i)
            steps.append(c)
            q.append(question)
            im.append(None if images is None else images[i])
            prefixes.append([] if answers is None else list(answers[i][:c]))
    hidden = (
        collect_hidden_states(adapter, q, im, position, injector, batch_size, desc, prefixes, list(layers))
        if q
        else torch.zeros(0, len(layers), adapter.hidden_size)
    )
    return CheckStates(
        hidden, torch.tensor(owner, dtype=torch.long), torch.tensor(steps), list(layers), len(questions)
    )


def sample_scores(probe: SafetyProbe, states: CheckStates) -> torch.Tensor:
    """Per answer, the lowest P(safe) over its checks ``(num_samples,)``; 1.0 for an answer without checks."""
    p = probe(states.select(probe.layer_spec)) if len(states.sample) else torch.zeros(0)
    scores = torch.ones(states.num_samples)
    return scores.scatter_reduce(0, states.sample, p.float(), reduce="amin", include_self=True)


def fit_candidates(
    harmful: CheckStates,
    benign: CheckStates,
    layers: list[LayerSpec],
    components: list[int],
    given: dict[str, SafetyProbe] | None = None,
) -> dict[str, SafetyProbe]:
    """``given`` probes plus one probe refitted per layer x PCA size on the check states (label 1 = benign); a
    list in ``layers`` is one candidate that reads those layers concatenated (named ``layers16+19_pca64``)."""
    candidates = dict(given or {})
    labels = torch.cat([torch.zeros(len(harmful.sample)), torch.ones(len(benign.sample))])
    for spec in layers:
        x = torch.cat([harmful.select(spec), benign.select(spec)])
        for m in components:
            candidates[candidate_name(spec, m)] = SafetyProbe.fit(x, labels, num_components=m, layer=spec)
    return candidates


def candidate_name(spec: LayerSpec, components: int) -> str:
    """The name of the candidate refitted on ``spec`` with ``components`` PCA directions (``layer19_pca64``)."""
    return f"{layer_name(spec)}_pca{components}"


def flat_layers(specs: list[LayerSpec]) -> list[int]:
    """Every ``hidden_states`` entry the layer specs read, each once, in first-seen order (what to collect)."""
    out: list[int] = []
    for spec in specs:
        out += [i for i in layer_list(spec) if i not in out]
    return out
