"""gradscope: measure how good your implicit-model gradients are.

Exact implicit gradients with certified linear solves, the phantom gradients of Geng et
al. (NeurIPS 2021), and the comparisons and theory checks that tell them apart.

Example:
    >>> import torch, gradscope as gs
    >>> fn = lambda p, h, x: torch.tanh(p["W"] @ h + x)
    >>> p = {"W": torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=torch.float64)}
    >>> x = torch.tensor([0.5, -0.3], dtype=torch.float64)
    >>> h0 = torch.zeros(2, dtype=torch.float64)
    >>> fp = gs.find_fixed_point(lambda h, x: fn(p, h, x), x, h0=h0, rtol=1e-13)
    >>> problem = gs.FixedPointProblem.from_function(fn, p, fp.value, x)
    >>> g = torch.ones(2, dtype=torch.float64)
    >>> exact = gs.estimate_gradient(problem, g, gs.Exact())
    >>> npg = gs.estimate_gradient(problem, g, gs.Neumann(steps=5, damping=0.5))
    >>> gs.compare(npg, exact).cosine > 0.9
    True

"""

from . import plots
from .estimators import (
    Cost,
    Exact,
    GradientEstimate,
    Neumann,
    OneStep,
    Unrolled,
    estimate_gradient,
    user_gradient,
)
from .exceptions import ConvergenceError, ConvergenceWarning, FixedPointWarning
from .fixed_point import Anderson, FixedPointResult, Picard, find_fixed_point
from .layers import BackwardStats, ForwardSolver, ImplicitLayer
from .metrics import Agreement, Comparison, compare
from .monitor import (
    CSVSink,
    Every,
    GradientMonitor,
    JSONLSink,
    LoggingSink,
    LogSpaced,
    TensorBoardSink,
    read_records,
    spectral_norm_extra,
    theory_extra,
)
from .operators import JacobianOperators, LinearMap
from .problem import FixedPointProblem, FixedPointResidual, default_fixed_point_rtol
from .solvers import (
    GMRES,
    BiCGSTAB,
    Dense,
    FixedPointIteration,
    Solution,
    default_solver_rtol,
    linear_solve,
)

# --- spectral and theory (issue 4) ---------------------------------------------------
from .spectral import (
    Arnoldi,
    DenseSpectrum,
    Lanczos,
    PowerIteration,
    ScipyEigs,
    SpectralEstimate,
    damped_power_norm,
    power_method_radius,
    smallest_singular_value,
    spectral_norm,
    spectral_radius,
)
from .sweeps import SweepResult, sweep
from .synthetic import DigitsData, DigitsDEQ, TanhCell, load_digits_tensors, random_tanh_problem
from .theory import (
    AscentCheck,
    DampingChoice,
    DampingLimit,
    StepsNeeded,
    check_ascent,
    damping_limit,
    optimal_damping,
    param_singular_values,
    steps_needed,
)
from .theory_report import Finding, TheoryReport, check_theory

# --- end spectral and theory ---------------------------------------------------------

__version__ = "0.1.0"

__all__ = [
    "GMRES",
    "Agreement",
    "Anderson",
    "BiCGSTAB",
    "Comparison",
    "ConvergenceError",
    "ConvergenceWarning",
    "Cost",
    "Dense",
    "Exact",
    "FixedPointIteration",
    "FixedPointProblem",
    "FixedPointResidual",
    "FixedPointResult",
    "FixedPointWarning",
    "GradientEstimate",
    "JacobianOperators",
    "LinearMap",
    "Neumann",
    "OneStep",
    "Picard",
    "Solution",
    "SweepResult",
    "Unrolled",
    "compare",
    "default_fixed_point_rtol",
    "default_solver_rtol",
    "estimate_gradient",
    "find_fixed_point",
    "linear_solve",
    "sweep",
    "user_gradient",
]

# --- spectral and theory (issue 4) ---------------------------------------------------
__all__ += [
    "Arnoldi",
    "AscentCheck",
    "DampingChoice",
    "DampingLimit",
    "DenseSpectrum",
    "Finding",
    "Lanczos",
    "PowerIteration",
    "ScipyEigs",
    "SpectralEstimate",
    "StepsNeeded",
    "TheoryReport",
    "check_ascent",
    "check_theory",
    "damped_power_norm",
    "damping_limit",
    "optimal_damping",
    "param_singular_values",
    "power_method_radius",
    "smallest_singular_value",
    "spectral_norm",
    "spectral_radius",
    "steps_needed",
]
# --- end spectral and theory ---------------------------------------------------------
# ---- training: implicit layer, monitor, plots, synthetic models (issue 5) ----
__all__ += [
    "BackwardStats",
    "CSVSink",
    "DigitsDEQ",
    "DigitsData",
    "Every",
    "ForwardSolver",
    "GradientMonitor",
    "ImplicitLayer",
    "JSONLSink",
    "LogSpaced",
    "LoggingSink",
    "TanhCell",
    "TensorBoardSink",
    "load_digits_tensors",
    "plots",
    "random_tanh_problem",
    "read_records",
    "spectral_norm_extra",
    "theory_extra",
]
# ---- end training block ----
