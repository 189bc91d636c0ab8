"""The demo's data: scikit-learn's 1797 real 8×8 digit images as standardized tensors.

scikit-learn is the optional ``data`` extra (``pip install gradscope[data]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import fail, require

__all__ = ["DigitsData", "load_digits_tensors"]


@dataclass
class DigitsData:
    """Standardized scikit-learn digits: ``x`` (N, 64) floats, ``y`` (N,) int64 labels.

    Example:
        >>> import torch, gradscope as gs
        >>> data = gs.demo.load_digits_tensors(seed=0, dtype=torch.float64)
        >>> isinstance(data, gs.demo.DigitsData), data.x_test.dtype == torch.float64
        (True, True)
        >>> tuple(data.x_test.shape), len(data.y_train) + len(data.y_test)
        ((449, 64), 1797)

    """

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
        A :class:`~gradscope.demo.DigitsData`.

    Raises:
        ImportError: scikit-learn is not installed (``pip install gradscope[data]``).

    Example:
        >>> import gradscope as gs
        >>> data = gs.demo.load_digits_tensors(seed=0)
        >>> tuple(data.x_train.shape), int(data.y_train.max())
        ((1348, 64), 9)

    """
    load_digits = require(
        "sklearn.datasets", "demo.load_digits_tensors", "the digits data", "data"
    ).load_digits
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
