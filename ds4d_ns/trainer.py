"""Nerfstudio's trainer, stopping cleanly on a non-finite loss.

A NaN or infinity in the loss (an SDS sample gone wrong, a degenerate Gaussian) would otherwise
flow into Adam's moments and every later checkpoint. The pipeline raises
:class:`NonFiniteLossError` before the backward pass, so the parameters are still those of the last
good step: the trainer saves them as a checkpoint and stops with a message naming the step and
the loss terms that were not finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Type

import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.rich_utils import CONSOLE


class NonFiniteLossError(FloatingPointError):
    """A training loss term was NaN or infinite."""


def check_finite_losses(loss_dict: Dict[str, torch.Tensor], step: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the terms of ``loss_dict`` that are not finite."""
    total = sum(loss_dict.values())
    if isinstance(total, torch.Tensor) and not bool(torch.isfinite(total)):
        bad = [name for name, value in loss_dict.items() if not bool(torch.isfinite(value).all())]
        raise NonFiniteLossError(f"step {step}: non-finite loss terms {bad or ['total']}")


@dataclass
class Ds4dTrainerConfig(TrainerConfig):
    """Trainer that saves a checkpoint and stops with a message when a loss becomes non-finite."""

    _target: Type = field(default_factory=lambda: Ds4dTrainer)


class Ds4dTrainer(Trainer):
    """Trainer whose iteration stops the run on :class:`NonFiniteLossError`, keeping a checkpoint,
    and whose resume (``--load-dir``) optimises the loaded parameters."""

    def _load_checkpoint(self) -> None:
        # Nerfstudio makes the optimizers before it loads a checkpoint, and loading a ds4d model
        # replaces its per-Gaussian parameters and TSSF module (their sizes come from the
        # checkpoint), so the first optimizers would hold orphaned tensors and nothing would train.
        # Rebuild them on the loaded parameters just before their state is restored.
        optimizers = self.optimizers
        original_load = optimizers.load_optimizers

        def rebuild_then_load(state) -> None:
            self.optimizers = self.setup_optimizers()
            self.optimizers.load_optimizers(state)

        optimizers.load_optimizers = rebuild_then_load  # type: ignore[method-assign]
        try:
            super()._load_checkpoint()
        finally:
            optimizers.load_optimizers = original_load  # type: ignore[method-assign]

    def train_iteration(self, step: int):
        try:
            return super().train_iteration(step)
        except NonFiniteLossError as err:
            self.save_checkpoint(step)
            CONSOLE.print(
                f"[bold red]Training stopped: {err}. The parameters before this step were saved to "
                f"{self.checkpoint_dir} (load them with --load-dir to resume, e.g. with a lower "
                "--pipeline.model.sds-weight)."
            )
            raise
