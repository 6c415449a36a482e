"""``ds4d-viz features``: what a trained ds4d model thinks moves.

Two sets of PNGs per frame, from the feature maps and TSSF weights stored in the checkpoint (no
feature backbone needed):

* ``dynamic_features/frame_XXXX.png``: one tile per training view, its image overlaid with the
  magnitude of DSFD's dynamic feature per patch (DS4D's Fig. 4). Magnitudes are normalised per
  view over the whole clip, so a tile that stays blue over time is a view where nothing moves.
* ``tssf_weights/frame_XXXX.png``: one tile per training view, the Gaussians deformed to that
  frame and seen from the input camera, coloured by the weight TSSF gives that view's feature
  (DS4D's Fig. 5). Weights are on one scale for the whole frame (blue 0, red the frame's largest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import torch
import tyro
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.progress import track
from torch import Tensor

from ds4d_ns.errors import UserError, exit_on_user_error
from ds4d_ns.io.checkpoints import check_checkpoint_folder
from ds4d_ns.io.output_folder import prepare_output_dir
from ds4d_ns.io.writers import write_png_atomic
from ds4d_ns.scripts.loading import load_trained_pipeline, require_at_least, resolve_run

TOOL = "ds4d-viz"
MANIFEST_NAME = "ds4d_viz.json"
"""Lists the images this command wrote in its output folder (see ``ds4d_ns.io.output_folder``)."""

_HEAT_STOPS = torch.tensor(
    [[0.0, 0.0, 0.5], [0.0, 0.3, 1.0], [0.0, 0.9, 0.9], [0.5, 1.0, 0.3], [1.0, 0.9, 0.0], [1.0, 0.2, 0.0]]
)


def heat_colors(values: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape 3"]:
    """Blue-to-red colours of values in [0, 1] (clamped), linear between six stops."""
    stops = _HEAT_STOPS.to(values.device)
    position = values.clamp(0.0, 1.0) * (len(stops) - 1)
    lower = position.floor().long().clamp(max=len(stops) - 2)
    blend = (position - lower)[..., None]
    return stops[lower] * (1.0 - blend) + stops[lower + 1] * blend


@dataclass
class VizFeatures:
    """Dynamic-feature heatmaps (DSFD) and per-view fusion weights (TSSF) of a trained ds4d run."""

    load_config: Path
    """config.yml of a ds4d run trained with frame features."""
    output_dir: Path = Path("feature_viz")
    """Folder the PNGs are written to (created if missing). It must be new, empty or an earlier ds4d-viz output
    (replaced whole); --force writes beside other files, never over them."""
    frames: Optional[Tuple[int, ...]] = None
    """Frame indices to draw; all frames when omitted."""
    resolution: int = 256
    """Side of each square tile in pixels."""
    force: bool = False
    """Write into a folder holding files ds4d-viz did not write (they are left alone)."""

    def main(self) -> List[Path]:
        from ds4d_ns.features.frame_features import frame_grid_from_dataset, load_rgb_on_white

        # every check that needs no model first: flags, config, dataset, checkpoint, output folder
        require_at_least("--resolution", self.resolution)
        if self.frames is not None and (not self.frames or min(self.frames) < 0):
            raise UserError(f"--frames must list frame indices from 0, got {list(self.frames)}")
        run = resolve_run(self.load_config)
        if not run.config.pipeline.datamanager.frame_features.enabled:
            raise UserError(
                f"{self.load_config}: this run was trained without frame features "
                "(frame_features.mode none); nothing to visualise"
            )
        check_checkpoint_folder(run.checkpoint_dir)
        settings = {"load_config": str(self.load_config), "frames": self.frames, "resolution": self.resolution}
        output = prepare_output_dir(
            self.output_dir,
            MANIFEST_NAME,
            settings,
            self.force,
            TOOL,
            job="features",
            inputs=(run.config_path, run.checkpoint_dir, run.dataset),
            resumable=False,
        )
        pipeline, _ = load_trained_pipeline(self.load_config)  # the training images are drawn too
        model = pipeline.model
        features = model.frame_point_features
        grid = frame_grid_from_dataset(pipeline.datamanager.train_dataset)
        num_frames = len(grid.image_paths)
        frames = list(range(num_frames)) if self.frames is None else list(self.frames)
        bad = [f for f in frames if not 0 <= f < num_frames]
        if bad:
            raise UserError(f"--frames {bad} outside the clip's {num_frames} frames")
        names = [f"{kind}/frame_{frame:04d}.png" for frame in frames for kind in ("dynamic_features", "tssf_weights")]
        output.check_can_write(names)
        magnitude = features.dynamic_magnitude.float()
        per_view_max = magnitude.amax(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
        written: List[Path] = []
        with output:  # replaces this command's previous images here, and only those
            for frame in track(frames, description="feature heatmaps"):
                tiles = []
                for view in range(features.num_views):
                    image = load_rgb_on_white(grid.image_paths[frame][view], grid.mask_paths[frame][view])
                    tiles.append(self._overlay(image, magnitude[frame, view] / per_view_max[0, view, 0, 0]))
                written.append(self._save(self.output_dir / "dynamic_features" / f"frame_{frame:04d}.png", tiles))
                time = float(features.times[frame])
                written.append(
                    self._save(self.output_dir / "tssf_weights" / f"frame_{frame:04d}.png", self._weights(model, time))
                )
        CONSOLE.log(
            f"wrote {len(written)} images under {escape(str(self.output_dir))} "
            f"(views: {escape(', '.join(grid.view_names))})"
        )
        return written

    def _overlay(self, image: Tensor, heat: Tensor) -> Tensor:
        size = (self.resolution, self.resolution)
        image = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=size, mode="bilinear")[0]
        heat = torch.nn.functional.interpolate(heat[None, None].cpu(), size=size, mode="bilinear")[0, 0]
        return 0.45 * image.permute(1, 2, 0) + 0.55 * heat_colors(heat)

    @torch.no_grad()
    def _weights(self, model, time: float) -> List[Tensor]:
        """Per view: the Gaussians at ``time`` seen from the input camera, coloured by that view's weight."""
        from ds4d_ns.rendering.rasterize import rasterize_gaussians

        features = model.frame_point_features
        geometry = model.gaussians_at(time)
        weights = model.frame_features_at(time).view_weights  # sampled where the model samples them
        weights = weights / weights.max().clamp_min(1e-8)
        frame = int((features.times - time).abs().argmin())
        front = int(features.front_view)
        scale = self.resolution / float(features.image_size[0])
        intrinsics = features.intrinsics[frame, front].clone()
        intrinsics[:2] *= scale
        tiles = []
        for view in range(features.num_views):
            render, alpha, _ = rasterize_gaussians(
                means=geometry.means,
                quats=geometry.quats,
                scales=torch.exp(geometry.scales),
                opacities=torch.sigmoid(model.opacities).squeeze(-1),
                colors=heat_colors(weights[view]),
                viewmats=features.viewmats[frame, front][None],
                Ks=intrinsics[None],
                width=self.resolution,
                height=self.resolution,
            )
            tiles.append((render[0] + (1.0 - alpha[0])).cpu())
        return tiles

    @staticmethod
    def _save(path: Path, tiles: List[Tensor]) -> Path:
        row = torch.cat([tile.clamp(0, 1) for tile in tiles], dim=1)
        write_png_atomic(path, (row * 255).round().to(torch.uint8).numpy())
        return path


def entrypoint() -> None:
    """Console entry point of ``ds4d-viz``."""
    tyro.extras.set_accent_color("bright_yellow")
    command = tyro.extras.subcommand_cli_from_dict({"features": VizFeatures})
    with exit_on_user_error(TOOL):
        command.main()


if __name__ == "__main__":
    entrypoint()
