"""The ds4d pipeline: nerfstudio's VanillaPipeline plus the training set-up that meets the user's weights.

Training set-up (``test_mode="val"``, as nerfstudio's trainer builds it) is where ``ns-train`` meets
the user's data and weights: every pretrained model the run needs is checked at once, before the
datamanager extracts frame features (``ds4d_ns.pretrained.require_weights``), and the
generative priors are loaded once the model exists. A user error (a bad dataset, missing weights)
ends the command with its one-line message and exit status 2 instead of a traceback (nerfstudio's
``ns-train`` entry point has no hook of its own for that). Other modes (``ns-eval``, ``ns-render``,
the viewer) load no pretrained network and let an error reach the calling command, which reports it
the same way.

The frame features are the datamanager's product (``ds4d_ns.data.datamanager``), handed to the model
at construction; this pipeline does not touch them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from torch.cuda.amp.grad_scaler import GradScaler

from ds4d_ns.errors import UserError, exit_with_user_error
from ds4d_ns.options import TestMode


@dataclass
class Ds4dPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline that checks the run's pretrained weights and loads the training priors at set-up."""

    _target: Type = field(default_factory=lambda: Ds4dPipeline)
    stop_on_non_finite_loss: bool = True
    """Check every training loss and stop (saving the last good parameters) when one is NaN or infinite."""


class Ds4dPipeline(VanillaPipeline):
    """VanillaPipeline whose training set-up checks weights first and loads the model's priors."""

    config: Ds4dPipelineConfig
    metrics_every: int = 1
    """Training metrics are computed on the steps divisible by this (and step 0). Nerfstudio's trainer
    writes them only on its log steps (``logging.steps_per_log``), so :class:`~ds4d_ns.trainer.Ds4dTrainer`
    sets it to that: the metrics' kernels (PSNR, moving-region PSNR, the ground truth they compare to)
    are otherwise launched on nine steps of ten for nothing, in a step bound by kernel launches."""

    def __init__(
        self,
        config: Ds4dPipelineConfig,
        device: str,
        test_mode: TestMode = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ) -> None:
        if test_mode != "val":
            super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
            self._share_schedule()
            return
        try:
            self._require_weights(config)
            super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
            self._share_schedule()
            self._setup_training_priors()
        except UserError as err:
            exit_with_user_error("ns-train", err)

    @staticmethod
    def _require_weights(config: Ds4dPipelineConfig) -> None:
        from ds4d_ns.ds4d_model import Ds4dModelConfig
        from ds4d_ns.pretrained import require_weights

        if isinstance(config.model, Ds4dModelConfig):
            require_weights(config)  # every missing model in one message, before any is loaded

    def _share_schedule(self) -> None:
        """The datamanager serves the middle frame for as long as the model's static stage lasts (its one source)."""
        from ds4d_ns.data.datamanager import Ds4dDatamanager
        from ds4d_ns.ds4d_model import Ds4dModel

        if isinstance(self.datamanager, Ds4dDatamanager) and isinstance(self.model, Ds4dModel):
            self.datamanager.static_stage_steps = self.model.config.static_stage_steps

    def _setup_training_priors(self) -> None:
        from ds4d_ns.ds4d_model import Ds4dModel

        if isinstance(self.model, Ds4dModel):
            self.model.setup_training_priors()  # LPIPS / Zero123 weights

    def get_train_loss_dict(self, step: int):
        """As :meth:`VanillaPipeline.get_train_loss_dict`, with the metrics only where they are logged, and
        the losses checked for non-finite values."""
        from ds4d_ns.losses.finite import check_finite_losses

        ray_bundle, batch = self.datamanager.next_train(step)
        outputs = self._model(ray_bundle)  # the distributed wrapper when there is one, as nerfstudio's
        metrics_dict = self.model.get_metrics_dict(outputs, batch) if step % self.metrics_every == 0 else {}
        loss_dict = self.model.get_loss_dict(outputs, batch, metrics_dict)
        if self.config.stop_on_non_finite_loss:
            check_finite_losses(loss_dict, step)
        return outputs, loss_dict, metrics_dict
