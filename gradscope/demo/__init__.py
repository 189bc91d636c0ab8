r"""The demo: a small DEQ trained on real digits while the monitor watches its gradients.

``gradscope demo`` runs it (:func:`~gradscope.demo.run_demo`); its pieces are usable on their own:

* ``gradscope.demo.data``: :func:`~gradscope.demo.load_digits_tensors` and :class:`~gradscope.demo.DigitsData`,
  scikit-learn's 1797 real 8×8 digit images, standardized, split with a seed;
* ``gradscope.demo.model``: :class:`~gradscope.demo.DigitsDEQ` (input projection →
  :class:`~gradscope.ImplicitLayer` with a :class:`~gradscope.synthetic.TanhCell` →
  linear head) and :func:`~gradscope.demo.equilibrium_problem` (the model's equilibrium on a batch as a
  :class:`~gradscope.FixedPointProblem`, with the cross-entropy's cotangent);
* ``gradscope.demo.runner``: the training run and the backward timings;
* ``gradscope.demo.report``: the summary, the table, the figures
  (:func:`~gradscope.demo.spectrum_figure`);
* ``gradscope.demo.progress``: the progress display.

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
