r"""Comparing a gradient estimate with a reference (usually the exact gradient).

For an estimate â and a reference a (both flattened over the compared tensors):

* cosine ``⟨â, a⟩ / (‖â‖ ‖a‖)``;
* relative error ``‖â − a‖ / ‖a‖`` and absolute error ``‖â − a‖`` (Theorem 3's ε);
* inner product ``⟨â, a⟩`` and ``ascent = ⟨â, a⟩ > 0`` (Theorem 1's conclusion);
* norm ratio ``‖â‖ / ‖a‖``.

Per-parameter numbers add up to the whole: inner products and squared norms are sums
over the parameter tensors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from ._checks import fail
from .estimators import GradientEstimate

__all__ = ["Agreement", "Comparison", "compare"]


@dataclass(frozen=True)
class Agreement:
    """How one estimate agrees with the reference on one set of tensors.

    Attributes:
        cosine: cosine similarity (NaN when either norm is 0).
        relative_error: ``‖â − a‖ / ‖a‖`` (inf when ``a = 0 ≠ â``).
        absolute_error: ``‖â − a‖``.
        inner: ``⟨â, a⟩``.
        norm_ratio: ``‖â‖ / ‖a‖``.
        estimate_norm: ``‖â‖``.
        reference_norm: ``‖a‖``.

    Example:
        >>> from gradscope.metrics import Agreement
        >>> a = Agreement.from_sums(inner=2.0, est_sq=4.0, ref_sq=1.0, diff_sq=1.0)  # â = 2a, ‖a‖ = 1
        >>> a.cosine, a.relative_error, a.norm_ratio, a.ascent
        (1.0, 1.0, 2.0, True)

    """

    cosine: float
    relative_error: float
    absolute_error: float
    inner: float
    norm_ratio: float
    estimate_norm: float
    reference_norm: float

    @property
    def ascent(self) -> bool:
        """Whether ``⟨â, a⟩ > 0``: −â is a descent direction of the loss."""
        return self.inner > 0

    @classmethod
    def from_sums(cls, inner: float, est_sq: float, ref_sq: float, diff_sq: float) -> Agreement:
        """Build from ``⟨â, a⟩``, ``‖â‖²``, ``‖a‖²`` and ``‖â − a‖²``."""
        en, rn, dn = math.sqrt(est_sq), math.sqrt(ref_sq), math.sqrt(diff_sq)
        cosine = inner / (en * rn) if en > 0 and rn > 0 else math.nan
        cosine = max(-1.0, min(1.0, cosine)) if not math.isnan(cosine) else cosine
        rel = dn / rn if rn > 0 else (0.0 if dn == 0 else math.inf)
        ratio = en / rn if rn > 0 else (1.0 if en == 0 else math.inf)
        return cls(cosine, rel, dn, inner, ratio, en, rn)


def _sums(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.detach().reshape(-1).double(), b.detach().reshape(-1).double()
    return torch.stack([(a * b).sum(), (a * a).sum(), (b * b).sum(), ((a - b) ** 2).sum()])


@dataclass(frozen=True)
class Comparison:
    """An estimate against a reference: overall, per parameter tensor and per input.

    Attributes:
        estimate: label of the estimate.
        reference: label of the reference.
        overall: :class:`~gradscope.metrics.Agreement` over all parameters together.
        per_param: :class:`~gradscope.metrics.Agreement` per parameter name.
        per_input: :class:`~gradscope.metrics.Agreement` per input (``None`` where either side has none).
        unreached: the parameters F does not reach in either estimate (zeros on that side,
            not estimates; marked in the table).

    Example:
        >>> import torch, gradscope as gs
        >>> from gradscope.estimators import GradientEstimate
        >>> ref = GradientEstimate.from_grads({"W": torch.tensor([1.0, 0.0], dtype=torch.float64)}, name="ref")
        >>> est = GradientEstimate.from_grads({"W": torch.tensor([1.0, 1.0], dtype=torch.float64)}, name="est")
        >>> c = gs.compare(est, ref)
        >>> round(c.cosine, 4), c.relative_error, c.per_param["W"].ascent
        (0.7071, 1.0, True)

    """

    estimate: str
    reference: str
    overall: Agreement
    per_param: dict[str, Agreement] = field(default_factory=dict)
    per_input: tuple[Agreement | None, ...] = ()
    unreached: tuple[str, ...] = ()

    # The overall numbers, as attributes of the comparison itself.
    @property
    def cosine(self) -> float:
        """Overall cosine similarity."""
        return self.overall.cosine

    @property
    def relative_error(self) -> float:
        """Overall ``‖â − a‖ / ‖a‖``."""
        return self.overall.relative_error

    @property
    def absolute_error(self) -> float:
        """Overall ``‖â − a‖``."""
        return self.overall.absolute_error

    @property
    def inner(self) -> float:
        """Overall ``⟨â, a⟩``."""
        return self.overall.inner

    @property
    def norm_ratio(self) -> float:
        """Overall ``‖â‖ / ‖a‖``."""
        return self.overall.norm_ratio

    @property
    def ascent(self) -> bool:
        """Overall ``⟨â, a⟩ > 0``."""
        return self.overall.ascent

    def to_dict(self) -> dict:
        """A plain dict (floats and strings) for JSON, CSV or a DataFrame."""
        return {
            "estimate": self.estimate,
            "reference": self.reference,
            "overall": {**asdict(self.overall), "ascent": self.overall.ascent},
            "per_param": {n: {**asdict(a), "ascent": a.ascent} for n, a in self.per_param.items()},
            "unreached": list(self.unreached),
            "per_input": [
                None if a is None else {**asdict(a), "ascent": a.ascent} for a in self.per_input
            ],
        }

    def table(self) -> str:
        """A text table: one row overall, one per parameter, one per input."""
        rows = [("(all parameters)", self.overall)]
        rows += [
            (f"{n} (unreached)" if n in self.unreached else n, a) for n, a in self.per_param.items()
        ]
        rows += [(f"input[{i}]", a) for i, a in enumerate(self.per_input) if a is not None]
        width = max(len(r[0]) for r in rows)
        head = f"{'':<{width}}  {'cosine':>8}  {'rel.err':>9}  {'abs.err':>9}  {'inner':>10}  {'norm ratio':>10}  ascent"
        lines = [f"{self.estimate} vs {self.reference}", head]
        for name, a in rows:
            lines.append(
                f"{name:<{width}}  {a.cosine:>8.4f}  {a.relative_error:>9.3e}  {a.absolute_error:>9.3e}  "
                f"{a.inner:>10.3e}  {a.norm_ratio:>10.4f}  {'yes' if a.ascent else 'NO'}"
            )
        if self.unreached:
            lines.append(f"unreached by F (zero gradients, not estimates): {list(self.unreached)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()


def compare(estimate: GradientEstimate, reference: GradientEstimate) -> Comparison:
    """Compare ``estimate`` with ``reference`` (usually the :class:`~gradscope.Exact` one).

    Args:
        estimate: the gradient to judge.
        reference: the gradient to judge it against.

    Returns:
        A :class:`~gradscope.metrics.Comparison`.

    Raises:
        TypeError: an argument is not a :class:`~gradscope.estimators.GradientEstimate`.
        ValueError: the two cover different parameters or differently shaped tensors.

    Example:
        >>> import torch, gradscope as gs
        >>> a = gs.estimators.GradientEstimate.from_grads({"w": torch.tensor([1.0, 0.0])}, name="a")
        >>> b = gs.estimators.GradientEstimate.from_grads({"w": torch.tensor([1.0, 1.0])}, name="b")
        >>> round(gs.compare(b, a).cosine, 4), gs.compare(b, a).ascent
        (0.7071, True)

    """
    _check_comparable(estimate, reference)
    names = list(reference.grads)
    parts = [_sums(estimate.grads[n], reference.grads[n]) for n in names]
    pairs = list(zip(estimate.input_grads, reference.input_grads))
    input_parts = []
    for i, (e, r) in enumerate(pairs):
        if e is not None and r is not None:
            if e.shape != r.shape:
                fail(
                    "compare",
                    f"input {i} gradients have shapes {tuple(e.shape)} and {tuple(r.shape)}.",
                )
            input_parts.append(_sums(e, r))
    # One host transfer for all the numbers.
    stacked = (
        torch.stack([p.cpu() for p in parts + input_parts])
        if parts or input_parts
        else torch.zeros(0, 4)
    )
    values = stacked.tolist()
    per_param = {n: Agreement.from_sums(*values[i]) for i, n in enumerate(names)}
    totals = [sum(v[j] for v in values[: len(names)]) for j in range(4)]
    overall = Agreement.from_sums(*totals)
    input_values = iter(values[len(names) :])
    per_input = tuple(
        Agreement.from_sums(*next(input_values)) if e is not None and r is not None else None
        for e, r in pairs
    )
    unreached = tuple(n for n in names if n in set(estimate.unreached) | set(reference.unreached))
    return Comparison(estimate.name, reference.name, overall, per_param, per_input, unreached)


def _check_comparable(estimate: GradientEstimate, reference: GradientEstimate) -> None:
    """Raise unless both are estimates of the same parameters, shapes and inputs."""
    for name, value in (("estimate", estimate), ("reference", reference)):
        if not isinstance(value, GradientEstimate):
            fail(
                "compare",
                f"{name} is a {type(value).__name__}; expected a gradscope.estimators.GradientEstimate.",
                TypeError,
            )
    if set(estimate.grads) != set(reference.grads):
        missing = sorted(set(reference.grads) - set(estimate.grads))
        extra = sorted(set(estimate.grads) - set(reference.grads))
        fail(
            "compare",
            f"the estimates cover different parameters (missing from estimate: {missing}; "
            f"not in reference: {extra}); expected the same names. Build both from the same "
            "FixedPointProblem.",
        )
    for n, ref in reference.grads.items():
        if estimate.grads[n].shape != ref.shape:
            fail(
                "compare",
                f"parameter {n!r} has shape {tuple(estimate.grads[n].shape)} in the estimate and "
                f"{tuple(ref.shape)} in the reference; expected the same shape.",
            )
    if (
        estimate.input_grads
        and reference.input_grads
        and len(estimate.input_grads) != len(reference.input_grads)
    ):
        fail(
            "compare",
            f"the estimate has {len(estimate.input_grads)} input gradients and the reference "
            f"{len(reference.input_grads)}; expected the same inputs.",
        )
