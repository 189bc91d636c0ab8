r"""The demo: a small DEQ trained on real digits while the monitor watches its gradients.

``gradscope demo`` runs it (:func:`run_demo`); its pieces are usable on their own:

* :mod:`~gradscope.demo.data`: :func:`load_digits_tensors` and :class:`DigitsData`,
  scikit-learn's 1797 real 8×8 digit images, standardized, split with a seed;
* :mod:`~gradscope.demo.model`: :class:`DigitsDEQ` (input projection →
  :class:`~gradscope.ImplicitLayer` with a :class:`~gradscope.synthetic.TanhCell` →
  linear head) and :func:`equilibrium_problem` (the model's equilibrium on a batch as a
  :class:`~gradscope.FixedPointProblem`, with the cross-entropy's cotangent);
* :mod:`~gradscope.demo.runner`: the training run and the backward timings;
* :mod:`~gradscope.demo.report`: the summary, the table, the figures
  (:func:`spectrum_figure`);
* :mod:`~gradscope.demo.progress`: the progress display.

Example:
    >>> import gradscope as gs
    >>> data = gs.demo.load_digits_tensors(seed=0)
    >>> model = gs.demo.DigitsDEQ(width=8)
    >>> model(data.x_test[:3]).shape
    torch.Size([3, 10])

"""

from .data import DigitsData, load_digits_tensors
from .model import DigitsDEQ, equilibrium_problem
from .report import spectrum_figure
from .runner import run_demo

__all__ = [
    "DigitsDEQ",
    "DigitsData",
    "equilibrium_problem",
    "load_digits_tensors",
    "run_demo",
    "spectrum_figure",
]
