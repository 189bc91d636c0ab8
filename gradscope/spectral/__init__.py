r"""Spectral estimates of the Jacobian at the equilibrium: ρ(J), ‖J‖₂, σ_min(I − J), ‖B_λ^k‖₂.

These numbers decide which gradient estimator can work (:ref:`theory-exact-gradient`, :ref:`theory-damping`):

* ``ρ(J) < 1`` makes fixed-point iteration and the undamped Neumann series converge;
  the eigenvalues μ of J give the admissible damping (:func:`gradscope.theory.damping_limit`);
* ``‖J‖₂`` bounds ``‖B_λ^k‖₂ ≤ (1 − λ(1 − ‖J‖₂))^k``;
* ``σ_min(I − J)`` is the distance of the adjoint system to singularity (``1/σ_min`` is
  the amplification of errors in ``(I − Jᵀ)u = g``);
* ``‖B_λ^k‖₂`` with ``B_λ = (1 − λ)I + λJ`` is the exact worst-case relative error of the
  Neumann adjoint, since ``u* − u_k = (B_λᵀ)^k u*`` [derived, :ref:`theory-neumann-error`].

Every function takes a :class:`~gradscope.FixedPointProblem` (the quantity of its J) or a
:class:`~gradscope.operators.LinearOperator` (the same quantity of that map), e.g.
``spectral_radius(damped(jacobian_transpose(problem), λ))`` is ``ρ(B_λ)``.

Everything is matrix-free (JVPs ``Jv`` and VJPs ``Jᵀv`` through the cached graph of F, or
the operator's own products) and batched: when the samples are independent
(:attr:`LinearOperator.independent_samples <gradscope.operators.LinearOperator.independent_samples>`,
J block-diagonal), each sample gets its own Krylov basis while every product is one
batched VJP or JVP, and the estimate is reported per sample and overall (the maximum over
samples, which is the value for the block-diagonal map). Methods are strategy objects:

==========================  ===========================================  ==========================
method                      what                                         products per sample
==========================  ===========================================  ==========================
:class:`Arnoldi`            Krylov (Arnoldi, full re-orthogonalisation)  ≤ ``max_steps`` VJPs
:class:`Lanczos`            symmetric Lanczos on ``AᵀA`` (norms)         ≤ 2 ``max_steps`` per power
:class:`PowerIteration`     power iteration + Rayleigh quotient          ``steps`` VJPs
                            (the peers' method, TorchDEQ's
                            ``power_method``)
:class:`ScipyEigs`          ``scipy.sparse.linalg.eigs`` (ARPACK)        as ARPACK needs (reference)
:class:`DenseSpectrum`      materialise J, ``torch.linalg.eigvals`` /    n (reference, small n)
                            ``svdvals``
==========================  ===========================================  ==========================

The modules: ``gradscope.spectral.methods`` (the methods and :class:`SpectralEstimate`),
``gradscope.spectral.krylov`` (the batched Arnoldi and Lanczos iterations),
``gradscope.spectral.radius`` (:func:`~gradscope.spectral_radius`) and
``gradscope.spectral.norms`` (:func:`spectral_norm`, :func:`smallest_singular_value`,
:func:`damped_power_norm`).
"""

from .methods import (
    Arnoldi,
    DenseSpectrum,
    Lanczos,
    PowerIteration,
    ScipyEigs,
    SpectralEstimate,
)
from .norms import damped_power_norm, smallest_singular_value, spectral_norm
from .radius import spectral_radius

__all__ = [
    "Arnoldi",
    "DenseSpectrum",
    "Lanczos",
    "PowerIteration",
    "ScipyEigs",
    "SpectralEstimate",
    "damped_power_norm",
    "smallest_singular_value",
    "spectral_norm",
    "spectral_radius",
]
