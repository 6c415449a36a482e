"""The check that stops training on a NaN or infinite loss, shared by the pipeline and the trainer.

The pipeline calls :func:`check_finite_losses` before the backward pass; the trainer catches
:class:`NonFiniteLossError`, saves the last good parameters and stops. Both import it from here, so
neither needs the other's module.
"""

from __future__ import annotations

from typing import Dict

import torch


class NonFiniteLossError(FloatingPointError):
    """A training loss term was NaN or infinite."""


def check_finite_losses(loss_dict: Dict[str, torch.Tensor], step: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the terms of ``loss_dict`` that are not finite."""
    total = sum(loss_dict.values())
    if isinstance(total, torch.Tensor) and not bool(torch.isfinite(total)):
        bad = [name for name, value in loss_dict.items() if not bool(torch.isfinite(value).all())]
        raise NonFiniteLossError(f"step {step}: non-finite loss terms {bad or ['total']}")
