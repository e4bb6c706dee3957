"""SafetyProbe: the detector that reads the model's hidden state and says how safe the answer is.

``P(safe) = sigmoid(coef . (components @ (h - mean)) + intercept)``: centre by a mean, project on the
top ``m`` principal components, logistic regression. ``h`` is the hidden state of one layer (the reference: the
last) at the last reminder token (or at the prompt end, where the reference fits it). ``layer`` indexes the
``hidden_states`` tuple transformers returns (0: the input embeddings, -1: the last layer); a middle layer often
separates harmful from benign answers better than the last one. All tensors are buffers, so the probe is frozen,
moves with the module, and is saved with it; :meth:`train_head` turns the logistic head into parameters (SAPT's
``train_probe``: the reminder and the gate trained together).
"""

from __future__ import annotations

import torch
from torch import nn


class SafetyProbe(nn.Module):
    """PCA + logistic-regression probe.

    Args:
        hidden_size: Width of the hidden states it reads.
        num_components: Principal components used by the logistic head (reference: 4).
        layer: Which entry of the model's ``hidden_states`` it reads (reference: -1, the last layer).
    """

    def __init__(self, hidden_size: int, num_components: int = 4, layer: int = -1):
        super().__init__()
        self.register_buffer("layer", torch.tensor(int(layer), dtype=torch.long))
        self.register_buffer("mean", torch.zeros(hidden_size))
        self.register_buffer("components", torch.zeros(num_components, hidden_size))
        self.register_buffer("coef", torch.zeros(num_components))
        self.register_buffer("intercept", torch.zeros(()))

    @property
    def hidden_size(self) -> int:
        return int(self.mean.shape[0])

    @property
    def num_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def layer_index(self) -> int:
        return int(self.layer)

    def select(self, hidden_states: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
        """The layer this probe reads from a model output's ``hidden_states`` (each ``(B, T, H)``)."""
        index = self.layer_index
        if not -len(hidden_states) <= index < len(hidden_states):
            raise ValueError(
                f"The probe reads hidden_states[{index}] but the model returns {len(hidden_states)} entries: "
                "it was fitted on another model."
            )
        return hidden_states[index]

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
        layer: int = -1,
    ) -> SafetyProbe:
        """Fit on hidden states ``(N, H)`` with labels ``(N,)`` (1 = safe / benign, 0 = harmful).

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
        probe = cls(h, m, layer=layer)
        probe.mean.copy_(mean)
        probe.components.copy_(components)
        probe.coef.copy_(coef.detach())
        probe.intercept.copy_(intercept.detach())
        return probe
