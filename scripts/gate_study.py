"""How the demo's gate calibration options fare on validation answers only (docs/demo.md, docs/calibration.md).

    python scripts/gate_study.py states runs/demo/train-seed2/reminder.safetensors runs/demo states_seed2.pt
    python scripts/gate_study.py compare states_seed2.pt       # cross-fitting vs plain (--repeats 6)
    python scripts/gate_study.py curve states_seed2.pt         # 30 / 55 / 80 training answers per class
    python scripts/gate_study.py l2 states_seed2.pt            # the logistic head's L2 penalty
    python scripts/gate_study.py states ... --fit_stride 4 dense_seed2.pt   # training answers read every 4 tokens
    python scripts/gate_study.py dense dense_seed2.pt          # fit on states every 16 / 8 / 4 tokens
    python scripts/gate_study.py gate_answers states_seed2.pt  # + the answers of the prompts kept for the gate
    python scripts/gate_study.py families states_seed2.pt      # standardised PCA, shrinkage LDA
    python scripts/gate_study.py criteria states_seed2.pt      # how the candidate is chosen (TPR at FPR, AUC)

``states`` reads every check state of a demo's training and validation answers with a trained reminder (the
framework's ``collect_check_states``, as ``ProbeCalibration`` does); the other steps refit and choose gates on those
states. Every comparison chooses on one half of the validation answers and measures on the other half (repeated
over seeded halves); no held-out prompt is read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from reminder_lightning.data.records import load_image
from reminder_lightning.data.sources import LocalRecords
from reminder_lightning.reminder.artifact import load_reminder
from reminder_lightning.reminder.calibration import (
    CheckStates,
    collect_check_states,
    fit_candidates,
    sample_scores,
)
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.gate_selection import cross_fit_gate, select_gate
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.probe_fitting import margin_threshold, roc_auc
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec

SETS = ("train_harmful", "train_benign", "val_harmful", "val_benign")
GATE_SETS = ("gate_harmful", "gate_benign")  # read when the demo folder has them (prompts kept for the gate)
LAYERS, COMPONENTS = [16, 19, 22, 25], [64, 128]


def states(reminder: str, work_dir: str, out: str, fit_stride: int | None = None) -> None:
    adapter = VLMAdapter.load(VLMSpec(name_or_path="demo:smollm2-llava", dtype="float32"), device="cpu")
    adapter.requires_grad_(False)
    artifact = load_reminder(reminder)
    injector = ReminderInjector(adapter.input_embeddings(), artifact.soft_prompt_module())
    saved = {}
    present = [n for n in GATE_SETS if Path(f"{work_dir}/data/sapt_{n}.jsonl").is_file()]
    for name in SETS + tuple(present):
        records = LocalRecords(path=f"{work_dir}/data/sapt_{name}.jsonl", kind=name.split("_")[1]).load()
        answers = [
            adapter.inputs.encode_text(r.safe_answer if r.is_safe else r.harmful_answer)[:48] for r in records
        ]
        images = [load_image(r) if r.image is not None else None for r in records]
        schedule = artifact.schedule
        if fit_stride and name.startswith("train"):  # training answers read every fit_stride tokens
            schedule = schedule.replace(interval=fit_stride)
        s = collect_check_states(
            adapter, [r.question for r in records], images, answers, [13, 16, 19, 22, 25, 28, -1], "reminder",
            injector, schedule, 16, desc=name, max_new_tokens=48,
        )  # fmt: skip
        saved[name] = {"hidden": s.hidden.half(), "sample": s.sample, "step": s.step, "layers": s.layers}
        saved[name]["n"] = s.num_samples
    torch.save(saved, out)


def _load(path: str, sets: tuple[str, ...] = SETS) -> list[CheckStates]:
    d = torch.load(path)
    return [
        CheckStates(d[k]["hidden"].float(), d[k]["sample"], d[k]["step"], d[k]["layers"], d[k]["n"]) for k in sets
    ]


def _halves(val_h: CheckStates, val_b: CheckStates, repeats: int):
    g = torch.Generator().manual_seed(123)
    for r in range(repeats):
        ph, pb = torch.randperm(val_h.num_samples, generator=g), torch.randperm(val_b.num_samples, generator=g)
        nh, nb = val_h.num_samples // 2, val_b.num_samples // 2
        yield r, (val_h.subset(ph[:nh]), val_b.subset(pb[:nb])), (val_h.subset(ph[nh:]), val_b.subset(pb[nb:]))


def _rates(choice, measure) -> tuple[float, float]:
    h, b = (sample_scores(choice.probe, s) for s in measure)
    return float((h < choice.threshold).float().mean()), float((b < choice.threshold).float().mean())


def _print(label: str, rates: list[tuple[float, float]]) -> None:
    t = torch.tensor(rates)
    print(f"{label}: harmful flagged {t[:, 0].mean():.3f}, benign flagged {t[:, 1].mean():.3f} (n={len(rates)})")


def compare(path: str, repeats: int = 6) -> None:
    th, tb, vh, vb = _load(path)
    plain = fit_candidates(th, tb, LAYERS, COMPONENTS)
    rates = {"plain": [], "cross-fit": []}
    for r, choose, measure in _halves(vh, vb, repeats):
        rates["plain"].append(_rates(select_gate(plain, *choose, 0.02), measure))
        crossed = cross_fit_gate(th, tb, *choose, LAYERS, COMPONENTS, target_fpr=0.02, folds=5, seed=r)
        rates["cross-fit"].append(_rates(crossed, measure))
    for label, values in rates.items():
        _print(label, values)


def curve(path: str, repeats: int = 4) -> None:
    th, tb, vh, vb = _load(path)
    g = torch.Generator().manual_seed(0)
    choose, measure = (vh.subset(range(0, 48, 2)), vb.subset(range(0, 100, 2))), (
        vh.subset(range(1, 48, 2)), vb.subset(range(1, 100, 2)),
    )  # fmt: skip
    for n in (30, 55, 80):
        rates = []
        for _ in range(repeats if n < min(th.num_samples, tb.num_samples) else 1):
            sh = th.subset(torch.randperm(th.num_samples, generator=g)[:n])
            sb = tb.subset(torch.randperm(tb.num_samples, generator=g)[:n])
            rates.append(_rates(select_gate(fit_candidates(sh, sb, LAYERS, COMPONENTS), *choose, 0.02), measure))
        _print(f"{n} training answers per class", rates)


def l2(path: str, repeats: int = 8) -> None:
    th, tb, vh, vb = _load(path)
    labels = torch.cat([torch.zeros(len(th.sample)), torch.ones(len(tb.sample))])
    for penalty in (1.0, 30.0, 300.0, 3000.0):
        candidates = {
            f"layer{layer}_pca{m}": SafetyProbe.fit(
                torch.cat([th.layer(layer), tb.layer(layer)]), labels, num_components=m, layer=layer, l2=penalty
            )
            for layer in LAYERS
            for m in COMPONENTS
        }
        rates = [
            _rates(select_gate(candidates, *choose, 0.02), measure)
            for _, choose, measure in _halves(vh, vb, repeats)
        ]
        _print(f"l2 {penalty}", rates)


def _mean_logit_rates(probes, threshold_from, measure, target_fpr=0.02):
    """Rates of a gate that averages the log-odds of ``probes`` (per check), threshold at_fpr on ``threshold_from``."""

    def scores(states: CheckStates) -> torch.Tensor:
        logit = torch.stack([p.logit(states.layer(p.layer_index)) for p in probes]).mean(0)
        out = torch.ones(states.num_samples)
        return out.scatter_reduce(0, states.sample, torch.sigmoid(logit), reduce="amin", include_self=True)

    vh, vb = threshold_from
    s_h, s_b = scores(vh), scores(vb)
    t = margin_threshold(s_h, s_b, target_fpr)
    mh, mb = (scores(s) for s in measure)
    return float((mh < t).float().mean()), float((mb < t).float().mean())


def _concat_rates(th, tb, layers, m, choose, measure, target_fpr=0.02):
    """A probe on the concatenated states of ``layers`` (PCA ``m``), threshold mid-gap on ``choose``."""

    def stack(s: CheckStates) -> torch.Tensor:
        return torch.cat([s.layer(layer) for layer in layers], dim=-1)

    labels = torch.cat([torch.zeros(len(th.sample)), torch.ones(len(tb.sample))])
    probe = SafetyProbe.fit(torch.cat([stack(th), stack(tb)]), labels, num_components=m)

    def scores(s: CheckStates) -> torch.Tensor:
        out = torch.ones(s.num_samples)
        return out.scatter_reduce(0, s.sample, probe(stack(s)).float(), reduce="amin", include_self=True)

    t = margin_threshold(scores(choose[0]), scores(choose[1]), target_fpr)
    mh, mb = (scores(s) for s in measure)
    return float((mh < t).float().mean()), float((mb < t).float().mean())


def ensemble(path: str, repeats: int = 8) -> None:
    """Several layers in one gate (mean log-odds of per-layer probes, or one probe on concatenated states) against
    the plain choice of one layer x PCA size."""
    th, tb, vh, vb = _load(path)
    plain = fit_candidates(th, tb, LAYERS, COMPONENTS)
    rates: dict[str, list] = {"plain": []}
    for _, choose, measure in _halves(vh, vb, repeats):
        rates["plain"].append(_rates(select_gate(plain, *choose, 0.02), measure))
        for m in COMPONENTS:
            probes = [plain[f"layer{layer}_pca{m}"] for layer in LAYERS]
            rates.setdefault(f"mean-logit {LAYERS} pca{m}", []).append(_mean_logit_rates(probes, choose, measure))
        for m in (64, 128, 256):
            rates.setdefault(f"concat {LAYERS} pca{m}", []).append(
                _concat_rates(th, tb, LAYERS, m, choose, measure)
            )
    for label, values in rates.items():
        _print(label, values)


def _every(states: CheckStates, stride: int) -> CheckStates:
    """The checks of ``states`` after ``stride - 1``, ``2 * stride - 1``, ... tokens."""
    keep = (states.step + 1) % stride == 0
    return CheckStates(
        states.hidden[keep], states.sample[keep], states.step[keep], states.layers, states.num_samples
    )


def dense(path: str, repeats: int = 8) -> None:
    """Candidates fitted on training answers read at the checks (every 16 tokens) or every 8 / 4 tokens, with PCA up
    to 128, 256 or the full width; chosen and measured at the real checks of the validation answers, at 1 and 2 of
    50 benign answers allowed."""
    th, tb, vh, vb = _load(path)
    layers = [13, 16, 19, 22, 25, 28, -1]
    read = th.step + 1  # the strides the training states were read at (states --fit_stride)
    finest = min(k for k in (4, 8, 16) if k == 16 or bool(((read % k == 0) & (read % (2 * k) != 0)).any()))
    strides = [k for k in (16, 8, 4) if k >= finest]
    for stride in strides:
        sh, sb = _every(th, stride), _every(tb, stride)
        for components in ([4, 16, 32, 64, 128], [4, 16, 32, 64, 128, 256], [4, 16, 32, 64, 128, 256, 576]):
            candidates = fit_candidates(sh, sb, layers, components)
            for fpr in (0.02, 0.04):
                rates = [_rates(select_gate(candidates, *c, fpr), m) for _, c, m in _halves(vh, vb, repeats)]
                label = f"fit every {stride} ({len(sh.sample)} + {len(sb.sample)} states), PCA <= {components[-1]}"
                _print(f"{label}, fpr {fpr}", rates)


def gate_answers(path: str, repeats: int = 10) -> None:
    """Candidates fitted on the training answers alone or with the answers of the prompts kept for the gate, PCA up
    to 128 or 256; chosen on validation halves at 1 of 50 benign answers, and on all validation answers at 1%."""
    th, tb, vh, vb, gh, gb = _load(path, SETS + GATE_SETS)
    sets = {
        "training answers": (th, tb),
        "+ gate answers": (CheckStates.concat([th, gh]), CheckStates.concat([tb, gb])),
    }
    for components in ([4, 16, 32, 64, 128], [4, 16, 32, 64, 128, 256]):
        for label, (h, b) in sets.items():
            candidates = fit_candidates(h, b, [13, 16, 19, 22, 25, 28, -1], components)
            rates = [_rates(select_gate(candidates, *c, 0.02), m) for _, c, m in _halves(vh, vb, repeats)]
            _print(f"{label} ({h.num_samples} + {b.num_samples}), PCA <= {components[-1]}", rates)
            full = select_gate(candidates, vh, vb, 0.01).report
            print(
                f"  all validation answers: {full['chosen']}, TPR {full['val_tpr']:.3f}, FPR {full['val_fpr']:.3f}"
            )


def _probe_on(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, m: int, layer: int) -> SafetyProbe:
    """PCA + logistic regression on the features ``(x - mean) @ w.T``, folded back into a plain SafetyProbe."""
    mu = x.mean(0)
    inner = SafetyProbe.fit((x - mu) @ w.T, y, num_components=m, layer=layer)
    probe = SafetyProbe(x.shape[1], inner.num_components, layer=layer)
    probe.mean.copy_(mu + inner.mean @ torch.linalg.pinv(w).T)
    probe.components.copy_(inner.components @ w)
    probe.coef.copy_(inner.coef)
    probe.intercept.copy_(inner.intercept)
    return probe


def _lda_direction(x: torch.Tensor, y: torch.Tensor, shrink: float) -> torch.Tensor:
    """``(1, H)``: the shrinkage-LDA direction from harmful (0) to benign (1) states."""
    h, b = x[y == 0], x[y == 1]
    centred = torch.cat([h - h.mean(0), b - b.mean(0)]).double()
    cov = centred.T @ centred / len(centred)
    cov = (1 - shrink) * cov + shrink * cov.trace() / len(cov) * torch.eye(len(cov), dtype=cov.dtype)
    w = torch.linalg.solve(cov, (b.mean(0) - h.mean(0)).double()).float()
    return (w / w.norm())[None]


def families(path: str, repeats: int = 8) -> None:
    """Plain PCA probes (PCA <= 128, <= 256) against standardised PCA and shrinkage LDA, validation halves."""
    th, tb, vh, vb = _load(path)
    labels = torch.cat([torch.zeros(len(th.sample)), torch.ones(len(tb.sample))])
    plain = fit_candidates(th, tb, [13, 16, 19, 22, 25, 28, -1], [4, 16, 32, 64, 128, 256])
    groups = {"plain PCA <= 128": {k: v for k, v in plain.items() if "pca256" not in k}, "plain PCA <= 256": plain}
    xs = {layer: torch.cat([th.layer(layer), tb.layer(layer)]) for layer in [13, 16, 19, 22, 25, 28, -1]}
    scale = {i: torch.diag(1 / (x.std(0) + 1e-3 * x.std(0).mean())) for i, x in xs.items()}
    groups["standardised PCA <= 256"] = {f"std{i}_{m}": _probe_on(x, labels, scale[i], m, i) for i, x in xs.items()
                                         for m in (4, 16, 32, 64, 128, 256)}  # fmt: skip
    groups["shrinkage LDA"] = {f"lda{i}_{g}": _probe_on(x, labels, _lda_direction(x, labels, g), 1, i)
                               for i, x in xs.items() for g in (0.05, 0.2, 0.5, 0.9)}  # fmt: skip
    for label, candidates in groups.items():
        _print(label, [_rates(select_gate(candidates, *c, 0.02), m) for _, c, m in _halves(vh, vb, repeats)])


def _tpr_at(h: torch.Tensor, b: torch.Tensor, allowed: int) -> float:
    """Share of harmful answers scored below the ``allowed + 1``-th lowest benign score."""
    bound = b.sort().values[allowed] if allowed < len(b) else torch.tensor(float("inf"))
    return float((h < bound).float().mean())


def criteria(path: str, repeats: int = 20) -> None:
    """How the candidate is chosen: TPR at the target FPR (ties: check AUC; the framework's rule), the answers' ROC
    AUC, or the mean TPR over 0..5% FPR (a partial AUC); each threshold mid-gap at 1 of 50 benign answers on one
    validation half, measured on the other."""
    try:  # a states file with the gate's own answers adds them to the training answers
        th, tb, vh, vb, gh, gb = _load(path, SETS + GATE_SETS)
        th, tb = CheckStates.concat([th, gh]), CheckStates.concat([tb, gb])
    except KeyError:
        th, tb, vh, vb = _load(path)
    candidates = fit_candidates(th, tb, [13, 16, 19, 22, 25, 28, -1], [4, 16, 32, 64, 128, 256])
    rules = {
        "tpr at fpr": None,
        "answer auc": lambda h, b: roc_auc(
            torch.cat([b, h]), torch.cat([torch.ones(len(b)), torch.zeros(len(h))])
        ),
        "mean tpr 0-5% fpr": lambda h, b: sum(_tpr_at(h, b, k) for k in range(int(0.05 * len(b)) + 1)),
    }
    rates: dict[str, list] = {name: [] for name in rules}
    for _, choose, measure in _halves(vh, vb, repeats):
        rates["tpr at fpr"].append(_rates(select_gate(candidates, *choose, 0.02), measure))
        scores = {n: [sample_scores(p, s) for s in choose] for n, p in candidates.items()}
        for name, rule in rules.items():
            if rule is None:
                continue
            best = max(scores, key=lambda n: rule(*scores[n]))
            rates[name].append(_rates(select_gate({best: candidates[best]}, *choose, 0.02), measure))
    for name, values in rates.items():
        _print(name, values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    s = sub.add_parser("states")
    s.add_argument("reminder")
    s.add_argument("work_dir")
    s.add_argument("out")
    s.add_argument("--fit_stride", type=int, default=None)
    steps = {"compare": compare, "curve": curve, "l2": l2, "ensemble": ensemble, "dense": dense,
             "gate_answers": gate_answers, "families": families, "criteria": criteria}  # fmt: skip
    for name, repeats in (("compare", 6), ("curve", 4), ("l2", 8), ("ensemble", 8), ("dense", 8),
                          ("gate_answers", 10), ("families", 8), ("criteria", 20)):  # fmt: skip
        p = sub.add_parser(name)
        p.add_argument("states")
        p.add_argument("--repeats", type=int, default=repeats)
    args = parser.parse_args()
    if args.step == "states":
        states(args.reminder, args.work_dir, args.out, args.fit_stride)
    else:
        steps[args.step](args.states, args.repeats)


if __name__ == "__main__":
    main()
