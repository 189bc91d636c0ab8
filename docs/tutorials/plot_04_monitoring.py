"""
Monitoring a DEQ during training
================================

A phantom gradient that is good at initialisation can drift as training changes the
model. :class:`~gradscope.GradientMonitor` watches an
:class:`~gradscope.ImplicitLayer` while it trains: at scheduled steps it takes the
equilibrium, the inputs and the cotangent :math:`g = \\partial\\ell/\\partial h^\\star`
that the training backward hands the layer, computes the exact gradient with a
certified solve, and compares the training gradient and a few other estimators with
it. It never changes the training (no ``.grad``, parameter, RNG state or train/eval
flag is touched).

This tutorial trains :class:`~gradscope.demo.DigitsDEQ` — a small DEQ classifier — on
scikit-learn's real 8×8 digit images (:func:`~gradscope.demo.load_digits_tensors`) with
NPG, :class:`~gradscope.Neumann` ``(5, 0.5)``, and reads what the monitor recorded.
"""

# %%
# The model, the data and the monitor
# -----------------------------------
# :class:`~gradscope.demo.DigitsDEQ` is ``x ↦ z = U x + b ↦ h* = tanh(W h* + z) ↦ V h* + c``;
# its implicit layer is ``model.layer``, trained here with ``Neumann(5, 0.5)``.
# The monitor observes every 20 steps and compares the training estimator (added
# automatically, role ``"training"``) and two others, UPG ``Unrolled(5, 0.5)`` and the
# one-step gradient ``OneStep()``, with the exact gradient (``Exact(GMRES(rtol=1e-6))``
# by default). A :class:`~gradscope.monitor.CSVSink` also writes the rows to a file, as a
# training script would.

import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import gradscope as gs

torch.manual_seed(0)
data = gs.demo.load_digits_tensors(seed=0)
print("train", tuple(data.x_train.shape), "test", tuple(data.x_test.shape))

model = gs.demo.DigitsDEQ(width=32, estimator=gs.Neumann(5, 0.5))
print(model)

folder = Path(tempfile.mkdtemp())
monitor = gs.GradientMonitor(
    estimators=[gs.Unrolled(5, 0.5), gs.OneStep()],
    schedule=gs.monitor.Every(20),
    sinks=[gs.monitor.CSVSink(folder / "gradients.csv")],
)
monitor.attach(model.layer, name="deq")


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


print(f"test accuracy before training: {accuracy(model, data.x_test, data.y_test):.3f}")

# %%
# Training
# --------
# An ordinary loop: the monitor hooks into the layer's forward and backward, so there is
# nothing to call. 200 steps of Adam on mini-batches of 64. The layer itself watches one
# thing for free: when the Neumann terms of its backward grow instead of shrinking, it
# issues a :class:`~gradscope.ConvergenceWarning`; the loop collects them to print.

optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
generator = torch.Generator().manual_seed(0)
losses, warned = [], {}
for step in range(200):
    batch = torch.randint(len(data.y_train), (64,), generator=generator)
    logits = model(data.x_train[batch])
    loss = torch.nn.functional.cross_entropy(logits, data.y_train[batch])
    optimizer.zero_grad()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gs.ConvergenceWarning)
        loss.backward()
    if caught:
        warned[step] = str(caught[0].message)
    optimizer.step()
    losses.append(loss.item())
monitor.close()  # detaches the hooks and closes the CSV file

print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
print(f"test accuracy after training: {accuracy(model, data.x_test, data.y_test):.3f}")
print(monitor)
print(f"the layer warned at {len(warned)} of 200 steps: {sorted(warned)}")
if warned:
    print(next(iter(warned.values())))

# %%
# What was recorded
# -----------------
# Records are tidy rows ``(step, layer, role, estimator, param, metric, value)``:
# ``role`` is ``forward`` (the forward solve), ``exact`` (the reference solve and its
# certified residual), ``training`` or ``estimator`` (the comparisons), and ``monitor``
# (its own cost). ``param`` is ``all`` for the whole gradient, or a parameter's name.

frame = monitor.dataframe()
print(frame.head(12).to_string())

# %%
# One question at a time is a filter and a pivot. The cosine to the exact gradient
# along training, per estimator:

compared = frame["role"].isin(["training", "estimator"])
cosine = frame[compared & (frame["param"] == "all") & (frame["metric"] == "cosine")]
print(cosine.pivot(index="step", columns="estimator", values="value"))

# %%
# Was every reference trustworthy? The exact solve's convergence flag and certified
# residual, and the forward residual of the layer's solve (the layer solves to
# ``rtol = 1e-4``, a training tolerance):

reference = frame["role"].isin(["exact", "forward"])
checks = frame[reference & frame["metric"].isin(["converged", "residual"])]
print(checks.pivot_table(index="step", columns=["role", "metric"], values="value"))

# %%
# The same rows, read back from the CSV file with :func:`~gradscope.monitor.read_records`:

print(gs.monitor.read_records(folder / "gradients.csv").shape, frame.shape)

# %%
# Figures
# -------
# :func:`gradscope.plots.plot_metric` draws a metric along training, one line per
# estimator, the training one thicker. UPG's line lies under NPG's: the two gradients
# are equal here (see the table above).

fig = gs.plots.plot_metric(monitor, "cosine")

# %%
fig = gs.plots.plot_metric(monitor, "relative_error")

# %%
# :func:`gradscope.plots.plot_cosine_distribution` is the paper's "dynamic precision"
# figure: training cut into step ranges, a histogram of the cosines (the overall one and
# each parameter's) in each range. Ten observations make sparse histograms; a long run
# observed every few dozen steps fills them in.

fig = gs.plots.plot_cosine_distribution(monitor, bins=2)
plt.show()

# %%
# Reading it: NPG and UPG coincide (they are equal at an exact fixed point, and the
# layer's forward solve is close to one), and both stay closer to the exact gradient
# than the one-step gradient does. The layer's one warning says that at that step the
# backward's Neumann terms had not decayed after 5 steps; a warning at many steps would
# call for a smaller :math:`\lambda` or a larger :math:`k`, and
# :func:`~gradscope.check_theory` on the trained layer's equilibrium says which (see the
# previous tutorial). The relative error is the bias
# :math:`\varepsilon` of Theorem 3 of Geng et al. (2021): training with a biased
# gradient converges to a floor of that order, so it is the number to watch if the
# loss stalls. To write every figure the records allow into a folder in one call, use
# :func:`gradscope.plots.report`.
