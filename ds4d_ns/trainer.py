"""Nerfstudio's trainer, stopping cleanly on a non-finite loss.

A NaN or infinity in the loss (an SDS sample gone wrong, a degenerate Gaussian) would otherwise
flow into Adam's moments and every later checkpoint. The pipeline raises
:class:`NonFiniteLossError` before the backward pass, so the parameters are still those of the last
good step: the trainer saves them as a checkpoint and stops with a message naming the step and
the loss terms that were not finite.

Checkpoints are written through a temporary file and a rename (``ds4d_ns.io.checkpoints``): a full
disk or a kill never leaves a truncated newest checkpoint, and a resume skips (and names) one
that does not load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Type

from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from ds4d_ns.io.checkpoints import (
    check_checkpoint_file,
    check_checkpoint_folder,
    checkpoint_files,
    checkpoint_name,
    load_checkpoint_file,
    load_newest_checkpoint,
    save_checkpoint_atomic,
)
from ds4d_ns.losses.finite import NonFiniteLossError, check_finite_losses  # noqa: F401 -- their old home
from ds4d_ns.options import TestMode


@dataclass
class Ds4dTrainerConfig(TrainerConfig):
    """Trainer that saves a checkpoint and stops with a message when a loss becomes non-finite."""

    _target: Type = field(default_factory=lambda: Ds4dTrainer)

    def save_config(self) -> None:
        """``ns-train`` saves the config first: settle the device, the run's name and the absolute data
        path there (``ds4d_ns.run_setup``) and the step counts derived from the schedule's sources
        (``ds4d_ns.schedule``), so config.yml records what the run uses. A schedule that contradicts
        itself ends ``ns-train`` with one line and exit status 2."""
        from ds4d_ns.errors import exit_on_user_error
        from ds4d_ns.run_setup import prepare_run
        from ds4d_ns.schedule import settle_schedule

        prepare_run(self)
        with exit_on_user_error("ns-train"):
            change = settle_schedule(self)
        if change:
            CONSOLE.log(escape(change))
        super().save_config()


class Ds4dTrainer(Trainer):
    """Trainer whose iteration stops the run on :class:`NonFiniteLossError`, keeping a checkpoint,
    whose checkpoints are written atomically, and whose resume (``--load-dir``) skips a checkpoint
    that does not load and optimises the loaded parameters."""

    def setup(self, test_mode: TestMode = "val") -> None:
        # a missing or empty checkpoint is reported before the dataset and the features are loaded
        load_dir, load_step = self.config.load_dir, self.config.load_step
        if load_dir is not None:
            if load_step is None:
                check_checkpoint_folder(load_dir)
            else:
                check_checkpoint_file(Path(load_dir) / checkpoint_name(load_step))
        elif self.config.load_checkpoint is not None:
            check_checkpoint_file(self.config.load_checkpoint)
        super().setup(test_mode)
        from ds4d_ns.pipeline import Ds4dPipeline

        if isinstance(self.pipeline, Ds4dPipeline):  # metrics only on the steps that write them
            self.pipeline.metrics_every = max(1, self.config.logging.steps_per_log)

    def _load_checkpoint(self) -> None:
        if self.config.load_dir is not None:
            path, state = load_newest_checkpoint(self.config.load_dir, self.config.load_step)
        elif self.config.load_checkpoint is not None:
            path, state = self.config.load_checkpoint, load_checkpoint_file(self.config.load_checkpoint)
        else:
            CONSOLE.print("No Nerfstudio checkpoint to load, so training from scratch.")
            return
        self._start_step = state["step"] + 1
        self.pipeline.load_pipeline(state["pipeline"], state["step"])
        # Nerfstudio makes the optimizers before it loads a checkpoint, and loading a ds4d model
        # replaces its per-Gaussian parameters and TSSF module (their sizes come from the
        # checkpoint), so the first optimizers would hold orphaned tensors and nothing would train.
        # Rebuild them on the loaded parameters before their state is restored.
        self.optimizers = self.setup_optimizers()
        self.optimizers.load_optimizers(state["optimizers"])
        if "schedulers" in state and self.config.load_scheduler:
            self.optimizers.load_schedulers(state["schedulers"])
        self.grad_scaler.load_state_dict(state["scalers"])
        CONSOLE.print(f"Done loading Nerfstudio checkpoint from {escape(str(path))}")

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        """Save through a temporary file and a rename: the previous checkpoint stays until this one is complete."""
        path = self.checkpoint_dir / checkpoint_name(step)
        # as nerfstudio's own save: a wrapped (distributed) pipeline holds the real one as ``module``
        pipeline = getattr(self.pipeline, "module", self.pipeline)
        state = {
            "step": step,
            "pipeline": pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        }
        save_checkpoint_atomic(state, path)
        if self.config.save_only_latest_checkpoint:
            for _, older in checkpoint_files(self.checkpoint_dir):  # checkpoints only, not other files
                if older != path:
                    older.unlink()

    def train_iteration(self, step: int):
        try:
            return super().train_iteration(step)
        except NonFiniteLossError as err:
            self.save_checkpoint(step)
            CONSOLE.print(
                f"[bold red]Training stopped: {escape(str(err))}. The parameters before this step were saved to "
                f"{escape(str(self.checkpoint_dir))} (load them with --load-dir to resume, e.g. with a lower "
                "--pipeline.model.sds.weight)."
            )
            raise


def forget_event_writers() -> None:
    """Close and forget nerfstudio's global event writers after a training.

    nerfstudio keeps them in module globals and every trainer set-up adds more; a second training in the
    same process (the next clip of a sequential batch, or of a reused Ray worker) would write its events
    through the first one's writers too.
    """
    from nerfstudio.utils import writer

    for event_writer in writer.EVENT_WRITERS:
        tensorboard = getattr(event_writer, "tb_writer", None)
        if tensorboard is not None:
            try:
                tensorboard.close()
            except OSError:
                pass  # its folder is gone: nothing left to flush
    writer.EVENT_WRITERS.clear()
    writer.EVENT_STORAGE.clear()
