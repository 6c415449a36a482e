"""``ds4d-eval``: the Consistent4D protocol for our models and for any method's renders.

* ``ds4d-eval model --load-config CONFIG [--data DIR]``: renders a trained ds4d run at its dataset's
  ``eval`` cameras at every frame time (composited on white) and scores the renders against those
  views' images. ``--data`` scores against another dataset with the same eval cameras (e.g. the clean
  version of a scene trained on degraded pseudo views).
* ``ds4d-eval videos --pred DIR --gt DIR``: scores renders made by any method: each folder holds one
  entry per view, named by the view (``eval_0`` .. ``eval_3``, or ``--views``): a folder of frame images
  (``0.png`` ..) or a video (``eval_0.mp4``).

The protocol (views, 512 x 512 on white, CLIP / LPIPS / PSNR / SSIM per frame averaged over frames then
views, moving-region PSNR, FVD over 16-frame clips, FID-VID) and its sources are described in
``ds4d_ns.evaluation.protocol``. A metric whose weights cannot be loaded is reported as unavailable,
with the reason and the flag that supplies them (``--clip-model``, ``--vgg16``, ``--i3d``,
``--inception``), never computed with random weights.

Output (``--output-dir``): ``metrics.json`` (means, per-view means, counts, unavailable metrics,
settings, package versions) and ``per_frame.csv`` (one row per view and frame), written atomically.
The folder follows the rules of ``ds4d_ns.io.output_folder``: it must be new, empty or hold an earlier
``ds4d-eval`` output, which a rerun replaces; ``--force`` writes beside other files, never over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.progress import track
from typing_extensions import Annotated

from ds4d_ns.errors import UserError, exit_on_user_error
from ds4d_ns.evaluation.protocol import default_view_names, to_protocol_frames
from ds4d_ns.evaluation.report import METRICS_NAME, PER_FRAME_NAME, write_report
from ds4d_ns.evaluation.score import EvalResult, MetricOptions, build_scorers, score_views
from ds4d_ns.evaluation.videos import (
    DatasetEvalViews,
    ViewVideos,
    check_matching,
    read_dataset_eval_views,
    read_view_videos,
)
from ds4d_ns.io.checkpoints import check_checkpoint_folder
from ds4d_ns.io.output_folder import OutputFolder, prepare_output_dir
from ds4d_ns.scripts.loading import RunLoadError, load_trained_model, resolve_run

TOOL = "ds4d-eval"
MANIFEST_NAME = "ds4d_eval.json"
"""Lists the files this command wrote in its output folder (see ``ds4d_ns.io.output_folder``)."""
OUTPUT_FILES = (METRICS_NAME, PER_FRAME_NAME)


def _settings(options: MetricOptions, extra: Dict[str, Any]) -> Dict[str, Any]:
    return {**options.settings(), **{k: str(v) if isinstance(v, Path) else v for k, v in extra.items()}}


def _log_means(result: EvalResult, out_dir: Path) -> None:
    shown = ", ".join(f"{m} {v:.4g}" for m, v in result.means.items() if v is not None)
    CONSOLE.log(f"{TOOL}: {escape(shown)} ({result.counts['views']} views x {result.counts['frames']} frames)")
    CONSOLE.log(f"wrote {escape(str(out_dir / METRICS_NAME))} and {escape(str(out_dir / PER_FRAME_NAME))}")


def _write(
    output: OutputFolder, out_dir: Path, result: EvalResult, header: Dict[str, Any], settings
) -> Tuple[Path, Path]:
    with output:  # replaces this command's earlier files here, and only those
        paths = write_report(out_dir, result, header, settings)
    _log_means(result, out_dir)
    return paths


@dataclass(kw_only=True)
class EvalVideos(MetricOptions):
    """Score renders made by any method against ground-truth view videos."""

    pred: Path
    """Folder of the predicted views: per view a folder of frames (eval_0/0.png ..) or a video (eval_0.mp4)."""
    gt: Path
    """Folder of the ground-truth views, laid out as --pred (RGBA frames are composited on white)."""
    views: Tuple[str, ...] = default_view_names()
    """Names of the views, in order (the Consistent4D scripts' eval_0 .. eval_3 by default)."""
    output_dir: Path = Path("ds4d-eval")
    """Folder for metrics.json and per_frame.csv; new, empty or an earlier ds4d-eval output (replaced)."""
    force: bool = False
    """Write into a folder holding files ds4d-eval did not write (they are left alone)."""

    def main(self) -> Tuple[Path, Path]:
        self.check_metric_options()
        if not self.views or len(set(self.views)) != len(self.views):
            raise UserError(f"--views: give distinct view names, got {list(self.views)}")
        settings = _settings(self, {"pred": self.pred, "gt": self.gt, "views": list(self.views)})
        output = prepare_output_dir(
            self.output_dir, MANIFEST_NAME, settings, self.force, TOOL, inputs=(self.pred, self.gt), resumable=False
        )
        output.check_can_write(OUTPUT_FILES)
        target = read_view_videos(self.gt, self.views, "--gt", self.resolution)
        prediction = read_view_videos(self.pred, self.views, "--pred", self.resolution)
        check_matching(prediction, target)
        device = self.torch_device()
        scorers = build_scorers(self, device)
        result = score_views(prediction, target, scorers, self, device)
        header = {"tool": TOOL, "mode": "videos", "pred": str(self.pred), "gt": str(self.gt)}
        return _write(output, self.output_dir, result, header, settings)


@dataclass(kw_only=True)
class EvalModel(MetricOptions):
    """Render a trained ds4d run at its dataset's eval cameras at every frame time, and score it."""

    load_config: Path
    """config.yml of a trained ds4d run."""
    data: Optional[Path] = None
    """Dataset whose eval views are the ground truth (default: the run's own dataset)."""
    output_dir: Optional[Path] = None
    """Folder for metrics.json and per_frame.csv (default: ds4d-eval/ in the run folder)."""
    force: bool = False
    """Write into a folder holding files ds4d-eval did not write (they are left alone)."""

    def main(self) -> Tuple[Path, Path]:
        self.check_metric_options()
        run = resolve_run(self.load_config)
        data = self.data if self.data is not None else run.dataset
        if data is None:
            raise RunLoadError(
                f"{self.load_config}: the run's dataset {run.dataset_given} is not found; pass the dataset whose eval "
                "views to score against with --data DIR"
            )
        if not Path(data).is_dir():
            raise UserError(f"--data {data}: no such folder (a ds4d dataset holding eval views)")
        check_checkpoint_folder(run.checkpoint_dir)
        out_dir = self.output_dir if self.output_dir is not None else run.config_path.parent / "ds4d-eval"
        settings = _settings(self, {"load_config": self.load_config, "data": data, "output_dir": out_dir})
        output = prepare_output_dir(
            out_dir,
            MANIFEST_NAME,
            settings,
            self.force,
            TOOL,
            inputs=(run.config_path, run.checkpoint_dir, data),
            resumable=False,
        )
        output.check_can_write(OUTPUT_FILES)
        evaluation = read_dataset_eval_views(Path(data), self.resolution)
        device = self.torch_device()
        scorers = build_scorers(self, device)
        model, step, _ = load_trained_model(run)
        prediction = render_eval_views(model, evaluation, self.resolution)
        result = score_views(prediction, evaluation.ground_truth, scorers, self, device)
        header = {
            "tool": TOOL,
            "mode": "model",
            "load_config": str(self.load_config),
            "method": run.config.method_name,
            "checkpoint_step": step,
            "data": str(data),
            "views": {
                name: {"view_index": index, **pose}
                for name, index, pose in zip(evaluation.ground_truth.names, evaluation.view_indices, evaluation.poses)
            },
            "times": list(evaluation.ground_truth.times or ()),
        }
        return _write(output, out_dir, result, header, settings)


@torch.no_grad()
def render_eval_views(model, evaluation: DatasetEvalViews, resolution: int) -> ViewVideos:
    """The model's frames at every eval camera and time, composited on white, quantised to uint8 (as saved
    renders are) and resized to ``resolution`` like the ground truth. One call per time renders all views
    (the model deforms its Gaussians once per time)."""
    truth = evaluation.ground_truth
    num_views, num_frames = truth.num_views, truth.num_frames
    frames: List[List[np.ndarray]] = [[] for _ in range(num_views)]
    for t in track(range(num_frames), description="rendering eval views", console=CONSOLE):
        rows = torch.arange(num_views) * num_frames + t  # cameras are view-major
        outputs = model.get_outputs(evaluation.cameras[rows].to(model.device))
        rgb, alpha = outputs["rgb"], outputs["accumulation"]
        background = outputs["background"].to(rgb).view(-1)[:3]
        # the model composites over its own background; put the same coverage over white instead
        on_white = (rgb + (1.0 - alpha) * (1.0 - background)).clamp(0.0, 1.0)
        for v, image in enumerate((on_white * 255.0).round().to(torch.uint8).cpu().numpy()):
            frames[v].append(image)
    rendered = np.stack([to_protocol_frames(np.stack(view), resolution) for view in frames])
    sources = tuple(f"render of {name}" for name in truth.names)
    return ViewVideos(truth.names, rendered, sources, truth.times)


Commands = Union[
    Annotated[EvalModel, tyro.conf.subcommand(name="model")],
    Annotated[EvalVideos, tyro.conf.subcommand(name="videos")],
]


def entrypoint() -> None:
    """Console entry point of ``ds4d-eval``."""
    tyro.extras.set_accent_color("bright_yellow")
    command = tyro.cli(Commands)
    with exit_on_user_error(TOOL):
        command.main()


if __name__ == "__main__":
    entrypoint()
