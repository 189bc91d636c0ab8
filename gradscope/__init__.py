"""gradscope: measure how good your implicit-model gradients are.

Exact implicit gradients with certified linear solves, the phantom gradients of Geng et
al. (NeurIPS 2021), and the comparisons and theory checks that tell them apart.

The top level holds what most users call; everything else lives in its subpackage,
in the order the data flows: :mod:`gradscope.problem` → :mod:`gradscope.operators` →
:mod:`gradscope.solvers` → :mod:`gradscope.estimators` → :mod:`gradscope.metrics` →
:mod:`gradscope.spectral` / :mod:`gradscope.theory` → :mod:`gradscope.layers` →
:mod:`gradscope.monitor` → :mod:`gradscope.plots` → :mod:`gradscope.demo` →
:mod:`gradscope.cli`.

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

from . import (
    demo as demo,
)
from . import (
    estimators as estimators,
)
from . import (
    fixed_point as fixed_point,
)
from . import (
    layers as layers,
)
from . import (
    metrics as metrics,
)
from . import (
    monitor as monitor,
)
from . import (
    operators as operators,
)
from . import (
    plots as plots,
)
from . import (
    problem as problem,
)
from . import (
    solvers as solvers,
)
from . import (
    spectral as spectral,
)
from . import (
    status as status,
)
from . import (
    sweeps as sweeps,
)
from . import (
    synthetic as synthetic,
)
from . import (
    theory as theory,
)
from .estimators import Estimator, Exact, Neumann, OneStep, Unrolled, estimate_gradient
from .exceptions import (
    CapturedTensorWarning,
    ConvergenceError,
    ConvergenceWarning,
    FixedPointWarning,
    UnreachedParameterWarning,
)
from .fixed_point import find_fixed_point
from .layers import ImplicitLayer
from .metrics import compare
from .monitor import GradientMonitor
from .problem import FixedPointProblem
from .spectral import spectral_radius
from .status import Status
from .theory import check_theory

__version__ = "0.1.0"

__all__ = [
    "CapturedTensorWarning",
    "ConvergenceError",
    "ConvergenceWarning",
    "Estimator",
    "Exact",
    "FixedPointProblem",
    "FixedPointWarning",
    "GradientMonitor",
    "ImplicitLayer",
    "Neumann",
    "OneStep",
    "Status",
    "UnreachedParameterWarning",
    "Unrolled",
    "check_theory",
    "compare",
    "estimate_gradient",
    "find_fixed_point",
    "spectral_radius",
]
