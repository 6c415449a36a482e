"""Scoring a predicted view set against the ground truth: every requested metric, per frame and view.

:class:`MetricOptions` holds what a user chooses (its fields are ``ds4d-eval`` flags);
:func:`build_scorers` loads the networks, recording each metric whose weights are missing as
unavailable with the reason; :func:`score_views` computes everything under a progress bar and
averages as the protocol does (over frames, then views).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import numpy as np
import torch
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ds4d_ns.errors import UserError
from ds4d_ns.evaluation import fvd as fvd_module
from ds4d_ns.evaluation.fvd import ClipFeatureExtractor
from ds4d_ns.evaluation.metrics import (
    ClipSimilarity,
    FidVid,
    LpipsVgg,
    MetricUnavailable,
    masked_psnr,
    moving_mask,
    psnr,
    ssim,
    to_unit,
)
from ds4d_ns.evaluation.protocol import (
    CLIP_MODEL_ID,
    DEFAULT_MOVING_THRESHOLD,
    FVD_CLIP_LENGTH,
    FVD_DEFAULT_STRIDE,
    I3D_INPUT_SIZE,
    METRICS,
    PROTOCOL_RESOLUTION,
    MetricName,
)
from ds4d_ns.evaluation.videos import ViewVideos

FRAME_METRICS: Tuple[MetricName, ...] = ("psnr", "ssim", "lpips", "clip", "psnr_moving")
"""Metrics with one value per view and frame (the CSV's columns)."""


@dataclass
class MetricOptions:
    """What to score and with which weights (``ds4d-eval`` flags shared by its commands)."""

    resolution: int = PROTOCOL_RESOLUTION
    """Side of the square frames every metric sees; predictions and ground truth are resized to it (PIL
    bicubic) when they differ. The protocol's is 512."""
    metrics: Tuple[MetricName, ...] = METRICS
    """Metrics to compute (all by default); the others are reported as not requested."""
    clip_model: str = CLIP_MODEL_ID
    """CLIP for the CLIP score: a Hugging Face id (taken from its cache, downloaded if the hub answers) or a
    local folder holding a copy of it."""
    vgg16: Optional[Path] = None
    """torchvision's ImageNet VGG16 weights (vgg16-397923af.pth) for LPIPS; default: torch's cache
    (~/.cache/torch/hub/checkpoints), downloaded where reachable."""
    i3d: Optional[Path] = None
    """The 400-class I3D weights (i3d_pretrained_400.pt, a state dict) for FVD; no package registry has them.
    Default: cd-fvd's own copy, if it has one."""
    inception: Optional[Path] = None
    """torch-fidelity's FID Inception weights (weights-inception-2015-12-05-6726825d.pth) for FID-VID;
    default: torch's cache, downloaded where reachable."""
    fvd_stride: int = FVD_DEFAULT_STRIDE
    """Frames between the starts of consecutive 16-frame FVD clips of a view."""
    moving_threshold: float = DEFAULT_MOVING_THRESHOLD
    """A pixel belongs to the moving region when one of its ground-truth channels spans more than this (in
    [0, 1]) over the clip."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to run the networks (auto: CUDA when present)."""

    def check_metric_options(self) -> None:
        """Raise a :class:`UserError` naming the flag of the first unusable value."""
        if self.resolution < 32:
            raise UserError(f"--resolution must be at least 32 (SSIM's window is 11 px), got {self.resolution}")
        if not self.metrics:
            raise UserError(f"--metrics: choose at least one of {list(METRICS)}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise UserError(f"--metrics: unknown {unknown}; choose from {list(METRICS)}")
        if self.fvd_stride < 1:
            raise UserError(f"--fvd-stride must be at least 1, got {self.fvd_stride}")
        if not 0.0 < self.moving_threshold < 1.0:
            raise UserError(f"--moving-threshold must lie strictly between 0 and 1, got {self.moving_threshold}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device here; use --device cpu (or auto)")

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def settings(self) -> Dict[str, Any]:
        """The options and the protocol constants they imply, for the report."""
        return {
            "resolution": self.resolution,
            "background": "white (RGBA blended over white)",
            "resize": "PIL bicubic to resolution x resolution",
            "averaging": "mean over frames, then over views",
            "metrics": list(self.metrics),
            "clip_model": self.clip_model,
            "lpips": "torchmetrics LPIPS, VGG, inputs in [-1, 1]",
            "psnr_ssim": "images in [0, 1], data range 1; SSIM Gaussian window 11, sigma 1.5",
            "vgg16": None if self.vgg16 is None else str(self.vgg16),
            "i3d": None if self.i3d is None else str(self.i3d),
            "inception": None if self.inception is None else str(self.inception),
            "fvd": {
                "clip_length": FVD_CLIP_LENGTH,
                "stride": self.fvd_stride,
                "input_size": I3D_INPUT_SIZE,
                "features": "I3D (400 classes) time-averaged logits, cd-fvd",
                "distribution": "all clips of all views",
            },
            "fid_vid": "per frame index: FID between predicted and true views (torchmetrics, Inception 2048), "
            "mean over frames",
            "moving_threshold": self.moving_threshold,
        }


@dataclass
class Scorers:
    """The networks of the metrics that need one; ``None`` where not requested or unavailable."""

    lpips: Optional[LpipsVgg] = None
    clip: Optional[ClipSimilarity] = None
    i3d: Optional[ClipFeatureExtractor] = None
    fid: Optional[FidVid] = None
    i3d_input_size: int = I3D_INPUT_SIZE
    """Side the FVD clips are resized to for ``i3d`` (I3D's 224; small stand-ins in tests take less)."""
    unavailable: Dict[str, str] = field(default_factory=dict)
    """Metric name -> why it cannot be computed here and the flag that would supply its weights."""


def build_scorers(options: MetricOptions, device: Union[str, torch.device]) -> Scorers:
    """Load the network of every requested metric; a missing one is recorded as unavailable (and logged).

    Raises:
        UserError: a weights flag names a file that is missing or not those weights.
    """
    scorers = Scorers()
    loaders = (
        ("lpips", "lpips", lambda: LpipsVgg.load(options.vgg16, device)),
        ("clip", "clip", lambda: ClipSimilarity.load(options.clip_model, device)),
        ("fvd", "i3d", lambda: fvd_module.load_i3d(options.i3d, device)),
        ("fid_vid", "fid", lambda: FidVid.load(options.inception, device)),
    )
    for metric, attribute, load in loaders:
        if metric not in options.metrics:
            continue
        try:
            setattr(scorers, attribute, load())
        except MetricUnavailable as err:
            scorers.unavailable[metric] = str(err)
            CONSOLE.log(f"[yellow]{escape(metric)} unavailable: {escape(str(err))}")
    return scorers


@dataclass
class EvalResult:
    """Everything :func:`score_views` measured."""

    means: Dict[str, Optional[float]]
    """Each metric averaged over frames then views; None where not computed (see ``unavailable``)."""
    per_view: Dict[str, Dict[str, Optional[float]]]
    """View name -> metric -> its mean over frames (the frame metrics only)."""
    rows: List[Dict[str, Any]]
    """One row per view and frame: view, frame, time and the frame metrics."""
    unavailable: Dict[str, str]
    """Metric -> why it has no value (missing weights, not applicable, not requested)."""
    counts: Dict[str, Any]
    """Views and frames scored, FVD clips, moving-pixel share per view."""
    fid_per_frame: Optional[List[float]] = None
    """FID of each frame index over the views, where FID-VID was computed."""


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=CONSOLE,
    )


def _mean(values: List[float]) -> Optional[float]:
    """Mean of the finite-or-infinite values, ignoring NaN; None if nothing is left."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


def score_views(
    prediction: ViewVideos,
    target: ViewVideos,
    scorers: Scorers,
    options: MetricOptions,
    device: Union[str, torch.device] = "cpu",
    chunk: int = 8,
) -> EvalResult:
    """Score ``prediction`` against ``target`` (same views, same frame count, same size)."""
    if prediction.frames.shape != target.frames.shape:
        raise ValueError(f"prediction {prediction.frames.shape} and target {target.frames.shape} differ in shape")
    requested = set(options.metrics)
    unavailable = dict(scorers.unavailable)
    for metric in METRICS:
        if metric not in requested:
            unavailable[metric] = "not requested (--metrics)"
    networks = {"lpips": scorers.lpips, "clip": scorers.clip}
    frame_metrics = [
        m for m in FRAME_METRICS if m in requested and m not in unavailable and networks.get(m, True) is not None
    ]
    num_views, num_frames = prediction.num_views, prediction.num_frames
    values: Dict[str, np.ndarray] = {m: np.full((num_views, num_frames), np.nan) for m in frame_metrics}
    moving_share: Dict[str, float] = {}
    counts: Dict[str, Any] = {"views": num_views, "frames": num_frames}
    means: Dict[str, Optional[float]] = {m: None for m in METRICS}
    fid_per_frame = None

    with _progress() as progress:
        task = progress.add_task("per-frame metrics", total=num_views * num_frames)
        for v, name in enumerate(target.names):
            pred_u8, true_u8 = prediction.frames[v], target.frames[v]
            mask = None
            if "psnr_moving" in values:
                mask = moving_mask(to_unit(true_u8, device), options.moving_threshold)
                moving_share[name] = float(mask.float().mean())
            for start in range(0, num_frames, chunk):
                part = slice(start, min(start + chunk, num_frames))
                pred, true = to_unit(pred_u8[part], device), to_unit(true_u8[part], device)
                computed: Dict[MetricName, torch.Tensor] = {}
                if "psnr" in values:
                    computed["psnr"] = psnr(pred, true)
                if "ssim" in values:
                    computed["ssim"] = ssim(pred, true)
                if mask is not None:  # set when psnr_moving is computed
                    computed["psnr_moving"] = masked_psnr(pred, true, mask)
                if "lpips" in values and scorers.lpips is not None:
                    computed["lpips"] = scorers.lpips(pred, true)
                if "clip" in values and scorers.clip is not None:
                    computed["clip"] = scorers.clip(pred_u8[part], true_u8[part])
                for metric, frame_values in computed.items():
                    values[metric][v, part] = frame_values.detach().cpu().double().numpy()
                progress.advance(task, part.stop - part.start)

        if "fvd" in requested and scorers.i3d is not None:
            starts = fvd_module.clip_starts(num_frames, FVD_CLIP_LENGTH, options.fvd_stride)
            task = progress.add_task("FVD clips (I3D)", total=2 * num_views * len(starts))
            try:
                means["fvd"], clips = fvd_module.fvd(
                    scorers.i3d,
                    prediction.frames,
                    target.frames,
                    options.fvd_stride,
                    size=scorers.i3d_input_size,
                    device=device,
                    advance=lambda k: progress.advance(task, k),
                )
                counts["fvd_clips_per_set"] = clips
                covered = starts[-1] + FVD_CLIP_LENGTH
                counts["fvd_frames_unused_per_view"] = num_frames - covered
            except ValueError as err:
                unavailable["fvd"] = f"not applicable: {err}"
        if "fid_vid" in requested and scorers.fid is not None:
            if num_views < 2:
                unavailable["fid_vid"] = (
                    f"not applicable: FID-VID compares the views of each frame, needs 2 or more, got {num_views}"
                )
            else:
                task = progress.add_task("FID-VID frames (Inception)", total=num_frames)
                per_frame = scorers.fid.per_frame(
                    prediction.frames, target.frames, advance=lambda k: progress.advance(task, k)
                )
                fid_per_frame = [float(v) for v in per_frame]
                means["fid_vid"] = float(np.mean(fid_per_frame))

    per_view: Dict[str, Dict[str, Optional[float]]] = {}
    for v, name in enumerate(target.names):
        per_view[name] = {m: _mean(list(values[m][v])) for m in frame_metrics}
    for metric in frame_metrics:
        means[metric] = _mean([mean for name in target.names if (mean := per_view[name][metric]) is not None])
    if "psnr_moving" in values:
        counts["moving_pixel_share"] = moving_share
        if means["psnr_moving"] is None:
            unavailable["psnr_moving"] = (
                f"no pixel of the ground truth changes by more than --moving-threshold {options.moving_threshold}"
            )
    for metric in METRICS:
        if means[metric] is None and metric not in unavailable:
            unavailable[metric] = "not computed: no network was given for it"
    rows = []
    for v, name in enumerate(target.names):
        for t in range(num_frames):
            row: Dict[str, Any] = {"view": name, "frame": t}
            row["time"] = target.times[t] if target.times is not None else None
            row.update({m: float(values[m][v, t]) for m in frame_metrics})
            rows.append(row)
    return EvalResult(means, per_view, rows, unavailable, counts, fid_per_frame)
