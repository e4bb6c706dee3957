"""SafetyProbe: the detector that reads the model's hidden state and says how safe the answer is.

``P(safe) = sigmoid(coef . (components @ (h - mean)) + intercept)``: centre by a mean, project on the
top ``m`` principal components, logistic regression. ``h`` is the hidden state of one layer (the reference: the
last) at the last reminder token (or at the prompt end, where the reference fits it). ``layer`` indexes the
``hidden_states`` tuple transformers returns (0: the input embeddings, -1: the last layer); a middle layer often
separates harmful from benign answers better than the last one. ``layer`` may also list several entries: the probe
then reads their states concatenated (``h`` of width ``len(layers) x hidden_size``), so an attacker must move every
one of them (a hardening option). All tensors are buffers, so the probe is frozen,
moves with the module, and is saved with it; :meth:`train_head` turns the logistic head into parameters (SAPT's
``train_probe``: the reminder and the gate trained together).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

LayerSpec = int | Sequence[int]
"""One ``hidden_states`` entry, or several read concatenated."""


def layer_list(spec: LayerSpec) -> list[int]:
    """The entries a layer spec reads, in order (one int: a list of one)."""
    layers = [int(spec)] if isinstance(spec, int) else [int(i) for i in spec]
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"A probe reads one hidden_states entry or several distinct ones; got {spec!r}.")
    return layers


def layer_name(spec: LayerSpec) -> str:
    """``layer19`` for one entry, ``layers16+19+22`` for several (gate candidate names)."""
    layers = layer_list(spec)
    return f"layer{layers[0]}" if len(layers) == 1 else "layers" + "+".join(str(i) for i in layers)


class SafetyProbe(nn.Module):
    """PCA + logistic-regression probe.

    Args:
        hidden_size: Width of the hidden states it reads.
        num_components: Principal components used by the logistic head (reference: 4).
        layer: Which entry of the model's ``hidden_states`` it reads (reference: -1, the last layer), or a list of
            entries read concatenated.
    """

    def __init__(self, hidden_size: int, num_components: int = 4, layer: LayerSpec = -1):
        super().__init__()
        layers = layer_list(layer)
        value = torch.tensor(layers[0] if isinstance(layer, int) else layers, dtype=torch.long)
        self.register_buffer("layer", value)
        width = hidden_size * len(layers)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("components", torch.zeros(num_components, width))
        self.register_buffer("coef", torch.zeros(num_components))
        self.register_buffer("intercept", torch.zeros(()))

    @property
    def layers(self) -> list[int]:
        """The ``hidden_states`` entries it reads (one, or several concatenated)."""
        return [int(i) for i in self.layer.reshape(-1).tolist()]

    @property
    def layer_spec(self) -> LayerSpec:
        """``layer`` as given: an int for one entry, a list for several."""
        return int(self.layer) if self.layer.dim() == 0 else self.layers

    @property
    def hidden_size(self) -> int:
        """The model's hidden size (the width of one layer's states)."""
        return int(self.mean.shape[0]) // len(self.layers)

    @property
    def num_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def layer_index(self) -> int:
        """The one ``hidden_states`` entry it reads; an error for a probe that reads several (use ``layers``)."""
        if self.layer.dim() != 0:
            raise ValueError(f"This probe reads several hidden_states entries {self.layers}: use .layers.")
        return int(self.layer)

    def select(self, hidden_states: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
        """What this probe reads from a model output's ``hidden_states`` (each ``(B, T, H)``): its layer, or its
        layers concatenated on the last dimension."""
        bad = [i for i in self.layers if not -len(hidden_states) <= i < len(hidden_states)]
        if bad:
            raise ValueError(
                f"The probe reads hidden_states{bad} but the model returns {len(hidden_states)} entries: "
                "it was fitted on another model."
            )
        if self.layer.dim() == 0:
            return hidden_states[self.layers[0]]
        return torch.cat([hidden_states[i] for i in self.layers], dim=-1)

    def train_head(self) -> SafetyProbe:
        """Make the logistic head (``coef``, ``intercept``) trainable parameters; the PCA basis stays a frozen buffer.

        Names and shapes are unchanged, so state dicts and saved artifacts read the same either way.
        """
        for name in ("coef", "intercept"):
            value = getattr(self, name)
            if isinstance(value, nn.Parameter):
                continue
            del self._buffers[name]
            self.register_parameter(name, nn.Parameter(value.detach().clone().float()))
        return self

    def logit(self, hidden: torch.Tensor) -> torch.Tensor:
        """Log-odds of *safe*, shape ``hidden.shape[:-1]``; computed in fp32."""
        h = hidden.float() - self.mean
        return (h @ self.components.T) @ self.coef + self.intercept

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """P(safe) in [0, 1] for hidden states ``(..., hidden_size)``."""
        return torch.sigmoid(self.logit(hidden))

    @classmethod
    def fit(
        cls,
        hidden: torch.Tensor,
        is_safe: torch.Tensor,
        num_components: int = 4,
        l2: float = 1.0,
        max_iter: int = 200,
        layer: LayerSpec = -1,
    ) -> SafetyProbe:
        """Fit on hidden states ``(N, H)`` (``(N, len(layer) x H)`` for several layers, concatenated in order) with
        labels ``(N,)`` (1 = safe / benign, 0 = harmful).

        PCA by SVD of the centred states; logistic regression on the projections by L-BFGS with an L2
        penalty ``l2 / 2 * ||coef||^2`` on the summed log-loss (scikit-learn's ``C = 1 / l2``). ``layer`` records
        which ``hidden_states`` entry ``hidden`` came from, so the probe reads the same one when applied.
        """
        hidden = hidden.detach().float().cpu()
        y = is_safe.detach().float().cpu().reshape(-1)
        if hidden.ndim != 2 or hidden.shape[0] != y.shape[0]:
            raise ValueError(
                f"hidden must be (N, H) with N labels; got {tuple(hidden.shape)} and {tuple(y.shape)}"
            )
        if y.min() == y.max():
            raise ValueError("SafetyProbe.fit needs both safe (1) and harmful (0) examples.")
        n, h = hidden.shape
        m = min(num_components, n, h)
        mean = hidden.mean(0)
        _, _, vh = torch.linalg.svd(hidden - mean, full_matrices=False)
        components = vh[:m]
        z = (hidden - mean) @ components.T
        coef = torch.zeros(m, requires_grad=True)
        intercept = torch.zeros((), requires_grad=True)
        opt = torch.optim.LBFGS([coef, intercept], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(z @ coef + intercept, y, reduction="sum")
            loss = loss + 0.5 * l2 * (coef**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        n_layers = len(layer_list(layer))
        if h % n_layers:
            raise ValueError(f"hidden width {h} is not {n_layers} layers' states concatenated (layer={layer!r}).")
        probe = cls(h // n_layers, m, layer=layer)
        probe.mean.copy_(mean)
        probe.components.copy_(components)
        probe.coef.copy_(coef.detach())
        probe.intercept.copy_(intercept.detach())
        return probe
