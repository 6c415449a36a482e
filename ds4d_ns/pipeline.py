"""The ds4d pipeline: nerfstudio's VanillaPipeline plus the frame-feature hand-over.

When the model uses frame features and the pipeline is set up for training, it arranges the
training images by frame and view, extracts (or loads from the cache) their DINOv2 features,
decouples and reduces them, and attaches the maps to the model, before the optimizers are made.
Evaluation and inference (``ns-eval``, ``ns-render``, the viewer) skip all of this: the maps are
in the checkpoint, so a trained model renders without the backbone.

Training set-up (``test_mode="val"``, as nerfstudio's trainer builds it) is where ``ns-train`` meets
the user's data and weights: every pretrained model the run needs is checked at once
(``ds4d_ns.scripts.weights.require_weights``), and a user error (a bad dataset, missing weights) ends the
command with its one-line message and exit status 2 instead of a traceback (nerfstudio's
``ns-train`` entry point has no hook of its own for that). Other modes let the error reach the
calling command, which reports it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from ds4d_ns.errors import UserError, exit_with_user_error


@dataclass
class Ds4dPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline that also prepares DS4D's frame features for the model."""

    _target: Type = field(default_factory=lambda: Ds4dPipeline)
    stop_on_non_finite_loss: bool = True
    """Check every training loss and stop (saving the last good parameters) when one is NaN or infinite."""


class Ds4dPipeline(VanillaPipeline):
    """VanillaPipeline whose training set-up attaches frame features to a ds4d model."""

    def __init__(
        self,
        config: Ds4dPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[object] = None,
    ) -> None:
        if test_mode != "val":
            super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)  # type: ignore[arg-type]
            self._share_schedule()
            return
        try:
            super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)  # type: ignore[arg-type]
            self._share_schedule()
            self._setup_training(device)
        except UserError as err:
            exit_with_user_error("ns-train", err)

    def _share_schedule(self) -> None:
        """The datamanager serves the middle frame for as long as the model's static stage lasts (its one source)."""
        from ds4d_ns.data.datamanager import Ds4dDatamanager
        from ds4d_ns.ds4d_model import Ds4dModel

        if isinstance(self.datamanager, Ds4dDatamanager) and isinstance(self.model, Ds4dModel):
            self.datamanager.static_stage_steps = self.model.config.static_stage_steps

    def _setup_training(self, device: str) -> None:
        from ds4d_ns.ds4d_model import Ds4dModel
        from ds4d_ns.scripts.weights import require_weights

        model = self.model
        if isinstance(model, Ds4dModel):
            require_weights(model.config)  # every missing model in one message, before any is loaded
            model.setup_training_priors()  # LPIPS / Zero123 weights
            if model.config.frame_features != "none":
                self._attach_frame_features(model, device)

    def get_train_loss_dict(self, step: int):
        from ds4d_ns.trainer import check_finite_losses

        outputs, loss_dict, metrics_dict = super().get_train_loss_dict(step)
        if self.config.stop_on_non_finite_loss:
            check_finite_losses(loss_dict, step)
        return outputs, loss_dict, metrics_dict

    def _attach_frame_features(self, model, device: str) -> None:
        from ds4d_ns.features.frame_features import (
            extract_raw_features,
            frame_grid_from_dataset,
            grid_cameras,
            prepare_features,
        )

        cfg = model.config
        grid = frame_grid_from_dataset(self.datamanager.train_dataset)
        raw = extract_raw_features(grid, cfg.feature_extractor, device)
        prepared = prepare_features(
            raw, grid.middle_frame, cfg.frame_features, cfg.feature_reduction, cfg.feature_dim, cfg.dsfd_reference
        )
        viewmats, intrinsics = grid_cameras(grid)
        model.attach_frame_features(
            prepared.maps,
            prepared.dynamic_magnitude,
            grid.times,
            viewmats,
            intrinsics,
            grid.width,
            grid.height,
            grid.front_view,
        )
        CONSOLE.log(
            f"Frame features ({cfg.feature_extractor.describe()}): {cfg.frame_features}, "
            f"{cfg.feature_reduction} to {cfg.feature_dim} channels, fusion {cfg.feature_fusion}, "
            f"views {', '.join(grid.view_names)}"
        )
