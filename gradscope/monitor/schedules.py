"""When the monitor observes: :class:`~gradscope.monitor.Every` n steps, or :class:`~gradscope.monitor.LogSpaced` (dense early)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .._checks import check_steps

__all__ = ["Every", "LogSpaced", "Schedule"]


@dataclass(frozen=True)
class Every:
    """Observe steps ``start, start + n, start + 2n, ...``.

    Example:
        >>> import gradscope as gs
        >>> [s for s in range(12) if gs.monitor.Every(5)(s)]
        [0, 5, 10]

    """

    n: int = 50
    start: int = 0

    def __post_init__(self) -> None:
        check_steps("Every", "n", self.n)
        check_steps("Every", "start", self.start, minimum=0)

    def __call__(self, step: int) -> bool:
        """Whether ``step`` is observed."""
        return step >= self.start and (step - self.start) % self.n == 0


@dataclass(frozen=True)
class LogSpaced:
    """Observe step 0 and the steps ``round(10^(i / per_decade))``, i = 0, 1, 2, ...

    Dense early in training, when the gradients change fastest; sparse later.

    Example:
        >>> import gradscope as gs
        >>> [s for s in range(40) if gs.monitor.LogSpaced(4)(s)]
        [0, 1, 2, 3, 6, 10, 18, 32]

    """

    per_decade: int = 4

    def __post_init__(self) -> None:
        check_steps("LogSpaced", "per_decade", self.per_decade)

    def __call__(self, step: int) -> bool:
        """Whether ``step`` is observed."""
        if step <= 0:
            return step == 0
        i = round(self.per_decade * math.log10(step))
        return any(round(10 ** (j / self.per_decade)) == step for j in (i - 1, i, i + 1) if j >= 0)


#: What the monitor accepts as a schedule.
Schedule = Every | LogSpaced | Callable[[int], bool]
