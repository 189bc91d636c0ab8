r"""Small models and data for tests and demos: a tanh cell with a controlled Jacobian and a digits DEQ.

* :class:`~gradscope.synthetic.TanhCell` — ``F(h, x) = tanh(W h + x)`` with ``‖W‖₂`` set on construction, so
  ``‖J‖₂ = ‖diag(1 − tanh²) W‖₂ ≤ ‖W‖₂``: a spectral norm below 1 makes F a contraction
  (:ref:`theory-exact-gradient`), above 1 allows ``ρ(J) ≥ 1``.
* :func:`~gradscope.synthetic.load_digits_tensors` — scikit-learn's 1797 real 8×8 digit images, standardized,
  split with a seed (scikit-learn is the optional ``data`` extra).
* :class:`~gradscope.synthetic.DigitsDEQ` — input projection → :class:`~gradscope.ImplicitLayer` with a
  :class:`~gradscope.synthetic.TanhCell` → linear head; trains in seconds on two CPU cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ._checks import check_positive, check_steps, fail
from .estimators import Exact, Neumann, OneStep, Unrolled
from .fixed_point import find_fixed_point
from .layers import ForwardSolver, ImplicitLayer
from .problem import FixedPointProblem

__all__ = ["DigitsDEQ", "DigitsData", "TanhCell", "load_digits_tensors", "random_tanh_problem"]


class TanhCell(nn.Module):
    r"""``F(h, x) = tanh(W h + x)`` (``x`` already projected to the state's width).

    Args:
        d: state width.
        spectral_norm: ``‖W‖₂`` after initialisation (> 0); ``‖J‖₂ ≤ ‖W‖₂`` at every h.
        generator: optional generator for the initial W (the global RNG otherwise).

    Example:
        >>> import torch, gradscope as gs
        >>> cell = gs.synthetic.TanhCell(8, spectral_norm=0.5)
        >>> round(float(torch.linalg.matrix_norm(cell.W.weight.detach(), ord=2)), 6)
        0.5

    """

    def __init__(
        self, d: int, spectral_norm: float = 0.8, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        check_steps("TanhCell", "d", d)
        check_positive("TanhCell", "spectral_norm", spectral_norm)
        self.W = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            w = torch.randn(d, d, generator=generator) / d**0.5
            w *= spectral_norm / torch.linalg.matrix_norm(w, ord=2)
            self.W.weight.copy_(w)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step ``tanh(W h + x)``."""
        return torch.tanh(self.W(h) + x)


@dataclass
class DigitsData:
    """Standardized scikit-learn digits: ``x`` (N, 64) floats, ``y`` (N,) int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_tensors(
    seed: int = 0,
    test_fraction: float = 0.25,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> DigitsData:
    """Load scikit-learn's ``load_digits`` (1797 real 8×8 images) as standardized tensors.

    Features are standardized with the training split's mean and standard deviation
    (constant pixels get scale 1). The split is a seeded permutation.

    Args:
        seed: seed of the permutation.
        test_fraction: share of samples in the test split, in (0, 1).
        dtype: floating dtype of the features.
        device: device of the tensors.

    Returns:
        A :class:`DigitsData`.

    Raises:
        ImportError: scikit-learn is not installed (``pip install gradscope[data]``).

    Example:
        >>> import gradscope as gs
        >>> data = gs.synthetic.load_digits_tensors(seed=0)
        >>> tuple(data.x_train.shape), int(data.y_train.max())
        ((1348, 64), 9)

    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "gradscope.synthetic.load_digits_tensors: scikit-learn is not installed; expected it for the "
            "digits data. Install it with `pip install gradscope[data]` (or scikit-learn)."
        ) from error
    if not 0.0 < test_fraction < 1.0:
        fail(
            "load_digits_tensors", f"test_fraction={test_fraction!r}; expected a number in (0, 1)."
        )
    bunch = load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float64)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    mean = x[train].mean(0)
    std = x[train].std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    x = (x - mean) / std
    x = x.to(dtype=dtype, device=device)
    y = y.to(device=device)
    return DigitsData(x[train], y[train], x[test], y[test])


class DigitsDEQ(nn.Module):
    r"""A small DEQ classifier: ``x ↦ z = U x + b ↦ h* = tanh(W h* + z) ↦ logits = V h* + c``.

    Args:
        width: state width d of the implicit layer.
        estimator: the layer's backward (default ``Neumann(5, 0.5)``).
        solver: the layer's :class:`~gradscope.layers.ForwardSolver` (default Anderson, rtol 1e-4).
        spectral_norm: initial ``‖W‖₂`` of the cell.
        n_in: input features (64 for digits).
        classes: number of classes.

    Attributes:
        project: the input projection (``nn.Linear``).
        layer: the :class:`~gradscope.ImplicitLayer` (its ``cell`` is a :class:`TanhCell`).
        head: the classifier head (``nn.Linear``).

    Example:
        >>> import torch, gradscope as gs
        >>> _ = torch.manual_seed(0)
        >>> model = gs.synthetic.DigitsDEQ(width=16)
        >>> model(torch.randn(5, 64)).shape
        torch.Size([5, 10])

    """

    def __init__(
        self,
        width: int = 48,
        estimator: Exact | Unrolled | Neumann | OneStep | None = None,
        solver: ForwardSolver | None = None,
        spectral_norm: float = 0.7,
        n_in: int = 64,
        classes: int = 10,
    ) -> None:
        super().__init__()
        self.project = nn.Linear(n_in, width)
        self.layer = ImplicitLayer(TanhCell(width, spectral_norm), estimator, solver)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, classes)``."""
        z = self.project(x)
        h = self.layer(z, h0=torch.zeros_like(z))
        return self.head(h)


def random_tanh_problem(
    d: int, n: int = 16, batch: int = 1, scale: float = 1.0, seed: int = 0
) -> FixedPointProblem:
    r"""A seeded float64 problem ``F(h, x) = tanh(W h + U x + b)``, h* solved to rtol 1e-12.

    ``W ~ N(0, scale²/d)``, ``U ~ N(0, 1/n)``, ``b ~ N(0, 0.01)``, ``x ~ N(0, 1)`` of shape
    ``(batch, n)``, all from ``torch.Generator().manual_seed(seed)``: the same seed gives
    the same problem. A reference family for spectral and gradient checks.

    Example:
        >>> import gradscope as gs
        >>> problem = gs.synthetic.random_tanh_problem(8, batch=2, scale=0.5)
        >>> problem.h_star.shape, problem.residual.max_relative < 1e-12
        (torch.Size([2, 8]), True)

    """
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    p = {
        "W": torch.randn(d, d, generator=g, dtype=dt) * scale / math.sqrt(d),
        "U": torch.randn(d, n, generator=g, dtype=dt) / math.sqrt(n),
        "b": torch.randn(d, generator=g, dtype=dt) * 0.1,
    }
    x = torch.randn(batch, n, generator=g, dtype=dt)

    def fn(p, h, x):
        return torch.tanh(h @ p["W"].T + x @ p["U"].T + p["b"])

    fp = find_fixed_point(
        lambda h, x: fn(p, h, x), x, h0=torch.zeros(batch, d, dtype=dt), rtol=1e-12, max_steps=500
    )
    return FixedPointProblem.from_function(fn, p, fp.value, x)
