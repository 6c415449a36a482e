"""Adam that runs as one fused kernel per parameter group where the parameters live on a GPU.

A ds4d step updates eight parameter groups; torch's default (``foreach``) Adam launches several
kernels per group, and on a step of ~18 ms that is mostly kernel launches those add up
(``benchmarks/profile_step.py``: about 2 ms of a ds4d-base step before). The fused implementation
does the same arithmetic in one kernel per group. The densification strategy edits the optimiser
state (``exp_avg``, ``exp_avg_sq``) exactly as before: the fused state has the same entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Type

import torch
from nerfstudio.engine.optimizers import AdamOptimizerConfig


@dataclass
class Ds4dAdamConfig(AdamOptimizerConfig):
    """Nerfstudio's Adam config with torch's fused implementation on CUDA."""

    _target: Type = torch.optim.Adam
    fused: Optional[bool] = None
    """Use torch's fused Adam; None picks it when every parameter is on a CUDA device (the CPU
    configurations keep the default implementation)."""

    def setup(self, params: Any) -> torch.optim.Optimizer:
        params = list(params)
        kwargs = {key: value for key, value in vars(self).items() if key not in ("_target", "max_norm")}
        if kwargs["fused"] is None:
            kwargs["fused"] = bool(params) and all(
                p.is_cuda for group in params for p in (group["params"] if isinstance(group, dict) else [group])
            )
        return self._target(params, **kwargs)
