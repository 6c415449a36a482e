"""Learning-rate schedule whose checkpoints load with ``torch.load(weights_only=True)``.

Nerfstudio's ``ExponentialDecayScheduler`` computes its factor with numpy, so the scheduler
state saved in a checkpoint holds numpy scalars, and since torch 2.6 a plain ``torch.load`` (as in
nerfstudio's ``eval_setup``) refuses them. This schedule returns Python floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Type

from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler


@dataclass
class LogLinearDecaySchedulerConfig(SchedulerConfig):
    """Learning rate decaying log-linearly from the optimizer's lr to ``lr_final``."""

    _target: Type = field(default_factory=lambda: LogLinearDecayScheduler)
    lr_final: Optional[float] = None
    """Learning rate reached at ``max_steps``; None keeps the initial rate."""
    max_steps: int = 7000
    """Step at which ``lr_final`` is reached; the rate stays there afterwards."""


def log_linear_factor(step: int, lr_init: float, lr_final: Optional[float], max_steps: int) -> float:
    """Multiplier of ``lr_init`` at ``step`` (a Python float)."""
    if lr_final is None or max_steps <= 0:
        return 1.0
    t = min(max(step / max_steps, 0.0), 1.0)
    return float(math.exp((1.0 - t) * math.log(lr_init) + t * math.log(lr_final)) / lr_init)


class LogLinearDecayScheduler(Scheduler):
    """See :class:`LogLinearDecaySchedulerConfig`."""

    config: LogLinearDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> LRScheduler:
        config = self.config
        return LambdaLR(optimizer, lambda step: log_linear_factor(step, lr_init, config.lr_final, config.max_steps))
