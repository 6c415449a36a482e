"""The ds4d model: splatfacto's canonical Gaussians deformed over time by a HexPlane field.

What changes from :class:`SplatfactoModel` and why:

* ``populate_modules`` builds the Gaussians itself: object scenes want a tight random ball when
  no seed points exist (splatfacto's 10-unit cube collapses on sparse object views), it adds the
  deformation field, and it defers LPIPS (whose backbone download must not block training).
* ``get_outputs`` renders a batch of cameras sharing one time: the deformation runs once per
  step and the rasteriser draws every view in one call (gsplat on CUDA, a pure-torch
  rasteriser elsewhere).
* Losses are per view with per-role weights (the input video is the truth, pseudo views are
  a generator's guesses; :mod:`ds4d_ns.losses.photometric`), plus an alpha loss and the HexPlane
  regularisers. What the model reports besides losses lives in :mod:`ds4d_ns.model_metrics`, the
  initial Gaussians in :mod:`ds4d_ns.initial_gaussians`, densification in :mod:`ds4d_ns.strategy`. The paper's
  generative priors (LPIPS on the pseudo views, multi-view SDS with Zero123) live in
  :mod:`ds4d_ns.guidance.priors`; the model calls them with a render function that reuses the
  step's deformed Gaussians, which the training outputs carry (``geometry``).

Training has two stages: during the first ``static_stage_steps`` only the canonical Gaussians are
fitted (the datamanager serves the middle frame); then the deformation field is switched on.

DS4D's frame features: DINOv2 features of every training view, decoupled into dynamic and static
parts (DSFD), are sampled at the Gaussian centres and fused across views (TSSF,
:mod:`ds4d_ns.fields.tssf`). The fused feature is concatenated with the HexPlane feature, and the
first layer of the deformation MLP is the paper's learned linear map of that concatenation. The
features are a product of the data side: the datamanager builds a feature bank
(:mod:`ds4d_ns.features.feature_bank`, switched by ``--pipeline.datamanager.frame-features.mode``)
and nerfstudio hands it to the model at construction in the dataset's metadata; checkpoints carry it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Self, Tuple, Type, Union

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.models.splatfacto import (
    SplatfactoModel,
    SplatfactoModelConfig,
)
from pytorch_msssim import SSIM
from torch import Tensor
from torch.nn import Parameter

from ds4d_ns.data.dataset_format import decode_roles, frame_time, middle_time
from ds4d_ns.features.feature_bank import FEATURE_BANK_KEY, FeatureBank
from ds4d_ns.fields.deformation import DeformationField, DeformedGaussians
from ds4d_ns.fields.tssf import FramePointFeatures, FusionResult
from ds4d_ns.guidance.priors import TrainingPriors
from ds4d_ns.guidance.sds_config import SdsConfig
from ds4d_ns.initial_gaussians import initial_gaussians, random_ball
from ds4d_ns.losses.photometric import role_weights
from ds4d_ns.model_metrics import image_metrics, load_lpips_metric, step_metrics
from ds4d_ns.options import WeightsMode
from ds4d_ns.rendering.camera_matrices import cached_viewmats, intrinsics_and_size
from ds4d_ns.rendering.playback import PlaybackCache, PlaybackMode, parameter_state
from ds4d_ns.rendering.rasterize import rasterize_gaussians
from ds4d_ns.rendering.torch_rasterizer import RenderMode
from ds4d_ns.step_graphs import DeformationStep, ImageLosses, gaussian_frame_features
from ds4d_ns.strategy import TopFractionStrategy


@dataclass
class Ds4dModelConfig(SplatfactoModelConfig):
    """Dynamic 3D Gaussians: canonical splats plus a HexPlane deformation field."""

    _target: Type = field(default_factory=lambda: Ds4dModel)
    static_stage_steps: int = 1000
    """Steps that fit the canonical Gaussians alone before the deformation field is trained."""
    hexplane_resolution: int = 64
    """Base spatial resolution of the HexPlane (4D-GS)."""
    hexplane_time_resolution: Optional[int] = None
    """Time resolution of the HexPlane; None uses half the number of frames (at least 2)."""
    hexplane_multires: Tuple[int, ...] = (1, 2)
    """Multipliers of the spatial resolution, one grid each, features concatenated."""
    hexplane_features: int = 32
    """Channels per plane and scale."""
    deformation_width: int = 64
    """Hidden width of the deformation MLP."""
    deformation_depth: int = 1
    """Hidden layers of the deformation MLP's shared trunk."""
    input_rgb_weight: float = 1.0
    """Weight of the photometric loss on input (video) views."""
    pseudo_rgb_weight: float = 0.5
    """Weight of the photometric loss on pseudo views, which come from a generator and can be wrong."""
    mask_loss_weight: float = 1.0
    """Weight of the mean squared error between rendered and ground-truth alpha."""
    plane_tv_weight: float = 1e-4
    """Weight of the total variation of the spatial HexPlane planes (4D-GS)."""
    time_smoothness_weight: float = 1e-2
    """Weight of the second-difference smoothness along time of the space-time planes (4D-GS)."""
    time_l1_weight: float = 1e-4
    """Weight of the L1 distance of the space-time planes from 1, i.e. from no motion (4D-GS)."""
    densify_top_fraction: float = 0.025
    """Fraction of Gaussians grown at each refinement, by accumulated gradient (DS4D, STAG4D)."""
    random_init_radius: float = 0.5
    """Radius of the ball sampled for random initial Gaussians when the data has no seed points."""
    lpips_loss_weight: float = 0.0
    """Weight of LPIPS (VGG) between renders and pseudo views (the paper uses 1.0; its VGG16 weights
    are downloaded on first use). 0 turns the loss off."""
    lpips_backbone: WeightsMode = "pretrained"
    """VGG weights of the LPIPS loss; random-init is for tests and timing only."""
    sds: SdsConfig = field(default_factory=SdsConfig)
    """Multi-view SDS with Zero123 (``--pipeline.model.sds.weight`` 0 turns it off): weights, views, model."""
    playback_cache: PlaybackMode = "frames"
    """Outside training (viewer, ds4d-render, ns-render, ds4d-eval), reuse deformed Gaussians: "frames"
    deforms each frame time once and blends the two neighbouring frames in between (linear means and
    log-scales, normalised lerp of rotations; frame times render exactly as without a cache, times between
    differ slightly from deforming at that time), "exact" caches each time rendered (identical images, but
    every new time deforms), "off" deforms at every render. Default "frames": the field is fitted only at
    frame times and this makes any time a blend, not a deformation."""
    eval_lpips: bool = True
    """Report LPIPS at evaluation when its VGG weights can be loaded (it says so when they cannot)."""
    cuda_graphs: bool = False
    """In training on a GPU, replay the deformation (with the HexPlane regularisers), the image losses and the
    LPIPS / SDS networks as CUDA graphs (``ds4d_ns.step_graphs``, ``ds4d_ns.cuda_graphs``), captured again when
    densification changes the Gaussian count. Off by default until its GPU tests and timings have run
    (benchmarks/RESULTS.md); the results are the same as eager."""
    motion_loss_weight: float = 0.0
    """Extra weight of the photometric L1 on each view's moving region (pixels whose ground truth changes
    over the clip, ``ds4d_ns.evaluation.motion_region``): a moving pixel counts ``1 + weight`` times. The
    static pixels are most of every image and dominate the gradients (DS4D's premise); 0 turns it off."""
    # Splatfacto fields whose defaults suit object-centric 4D generation better:
    num_random: int = 10000
    """Number of random initial Gaussians when the data has no seed points (STAG4D)."""
    num_downscales: int = 0
    """Resolution halvings at the start; the data is already small (256 px)."""
    use_absgrad: bool = False
    """Densify on summed absolute gradients (AbsGS) rather than plain ones; growth is by quantile either way."""
    densify_grad_thresh: float = 0.0002
    """Floor of the growth threshold: Gaussians below it never grow, whatever their rank."""
    cull_alpha_thresh: float = 0.01
    """Opacity below which Gaussians are pruned (STAG4D)."""
    warmup_length: int = 500
    """Steps before the first densification."""
    stop_split_at: int = 6000
    """Step after which Gaussians are no longer grown or pruned (STAG4D stops at 6000)."""
    sh_degree: int = 1
    """Spherical-harmonics degree; low, since seven sparse views overfit view-dependent colour."""


class Ds4dModel(SplatfactoModel):
    """Canonical Gaussians + HexPlane deformation, rendered a timestamp at a time."""

    config: Ds4dModelConfig

    # ------------------------------------------------------------------ construction
    def populate_modules(self) -> None:
        if self.config.camera_optimizer.mode != "off":
            raise ValueError("ds4d does not optimise camera poses: set --pipeline.model.camera-optimizer.mode off")
        if self.config.use_bilateral_grid:
            raise ValueError("ds4d does not support the bilateral grid: set --pipeline.model.use-bilateral-grid False")
        bank: Optional[FeatureBank] = self.kwargs.get("metadata", {}).get(FEATURE_BANK_KEY)
        means, colors = self._initial_points()
        distances, _ = self.k_nearest_sklearn(means, 3)
        spacing = torch.from_numpy(distances).float().mean(dim=-1, keepdim=True)
        self.gauss_params = initial_gaussians(means, colors, spacing, self.config.sh_degree)
        self.deformation = DeformationField(
            aabb=self.scene_box.aabb.float(),
            spatial_resolution=self.config.hexplane_resolution,
            time_resolution=self._time_resolution(),
            multires=self.config.hexplane_multires,
            plane_features=self.config.hexplane_features,
            mlp_width=self.config.deformation_width,
            mlp_depth=self.config.deformation_depth,
            extra_feature_dim=0 if bank is None else bank.config.dim,
        )
        self.frame_point_features = None if bank is None else FramePointFeatures(bank)
        self.deformation_step = DeformationStep(self.deformation, self.config.cuda_graphs, self.frame_point_features)
        self.image_losses = ImageLosses.from_model_config(self.config)
        self.feature_sampling_points = None if bank is None else bank.config.sampling_points
        self.priors: Optional[TrainingPriors] = None
        self._playback = PlaybackCache()
        # Splatfacto's parents read these; the camera optimizer is always "off" here.
        self.camera_optimizer = self.config.camera_optimizer.setup(num_cameras=self.num_train_data, device="cpu")
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = SSIM(data_range=1.0, size_average=True, channel=3)
        self._lpips: Optional[torch.nn.Module] = None
        self._lpips_tried = False
        self.step = 0
        self.crop_box = None
        self.background_color = torch.ones(3)
        self.strategy = TopFractionStrategy.from_model_config(self.config, self.num_train_data)
        self.strategy_state = self.strategy.initialize_state(scene_scale=1.0)

    def _initial_points(self) -> Tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"]]:
        """Seed points and colours in [0, 1], or a random ball of grey-ish points."""
        if self.seed_points is not None and not self.config.random_init:
            means = self.seed_points[0].detach().float().cpu()
            colors = self.seed_points[1].detach().float().cpu() / 255.0
            return means, colors.clamp(0.02, 0.98)
        return random_ball(self.config.num_random, self.config.random_init_radius)

    def _num_frames(self) -> Optional[int]:
        """Frames of the training clip, from the dataparser; None for a model built from a checkpoint alone."""
        num_frames = self.kwargs.get("metadata", {}).get("num_frames")
        return None if num_frames is None else int(num_frames)

    @property
    def canonical_time(self) -> float:
        """Time of the middle frame, which the canonical Gaussians fit: cameras without a time render it."""
        return middle_time(self._num_frames())

    def _time_resolution(self) -> int:
        if self.config.hexplane_time_resolution is not None:
            return self.config.hexplane_time_resolution
        num_frames = self._num_frames()
        return max(2, math.ceil((50 if num_frames is None else num_frames) / 2))

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        """One group per Gaussian attribute, the HexPlane grid, the deformation MLP, and TSSF if learnt."""
        groups = self.get_gaussian_param_groups()
        groups["deformation_grid"] = list(self.deformation.hexplane.parameters())
        hexplane_ids = {id(p) for p in groups["deformation_grid"]}
        groups["deformation_mlp"] = [p for p in self.deformation.parameters() if id(p) not in hexplane_ids]
        if self.frame_point_features is not None and list(self.frame_point_features.parameters()):
            groups["feature_fusion"] = list(self.frame_point_features.parameters())
        return groups

    def setup_training_priors(self) -> None:
        """Load the networks of the LPIPS and SDS losses that are on (at training set-up; rendering never needs them).

        Raises:
            PerceptualWeightsUnavailable, GuidanceWeightsUnavailable: weights missing; the message names them
                and the flag that turns the loss off.
        """
        config = self.config
        self.priors = TrainingPriors.load(
            config.lpips_loss_weight, config.lpips_backbone, config.sds, self.device, config.cuda_graphs
        )

    # ------------------------------------------------------------------ rendering
    @property
    def dynamic_stage(self) -> bool:
        """Whether the deformation field is in use (always outside training)."""
        return not self.training or self.step >= self.config.static_stage_steps

    def gaussians_at(self, time: float | Tensor) -> DeformedGaussians:
        """Gaussian geometry at ``time`` (log-scales, unnormalised quaternions)."""
        if not self.dynamic_stage:
            return DeformedGaussians(self.means, self.quats, self.scales)
        features = None if self.frame_point_features is None else self.frame_features_at(time).features
        return self.deformation(self.means, self.quats, self.scales, time, features)

    def frame_features_at(self, time: float | Tensor) -> FusionResult:
        """Fused frame features of the Gaussians at ``time`` and each view's weight, sampled where the
        configuration says (``sampling_points``; ``ds4d_ns.step_graphs.gaussian_frame_features``)."""
        if self.frame_point_features is None:
            raise RuntimeError("this model has no frame features (--pipeline.datamanager.frame-features.mode none)")
        field, sampling = self.deformation, self.feature_sampling_points
        return gaussian_frame_features(
            self.frame_point_features, field, sampling, self.means, self.quats, self.scales, time
        )

    def frame_times(self) -> Optional[List[float]]:
        """Times of the training clip's frames, increasing; None when the frame count is unknown."""
        num_frames = self._num_frames()
        return None if num_frames is None else [frame_time(i, num_frames) for i in range(num_frames)]

    def playback_geometry(self, time: float | Tensor) -> DeformedGaussians:
        """Geometry at ``time`` through the playback cache (``config.playback_cache``); training never
        uses the cache, since its parameters change every step and it needs gradients."""
        if self.training or self.config.playback_cache == "off":
            return self.gaussians_at(time)
        state = parameter_state([*self.parameters(), *self.buffers()])
        return self._playback.geometry(
            float(time), self.config.playback_cache, self.frame_times(), state, self.gaussians_at
        )

    def train(self, mode: bool = True) -> Self:
        # Training changes the parameters at every step: drop the playback geometry (and its memory).
        if mode:
            self._playback.clear()
        return super().train(mode)

    def _get_background_color(self) -> Tensor:
        # Random backgrounds in training keep splats from explaining the background; evaluation
        # composites over white, as the Consistent4D protocol does.
        if self.config.background_color == "random" and not self.training:
            return torch.ones(3, device=self.device)
        return super()._get_background_color()

    def get_outputs(self, camera: Union[RayBundle, Cameras]) -> Dict[str, Any]:
        """Render cameras ``[V]``; outputs carry a leading view dimension ``[V, H, W, C]``.

        The parameter is typed as nerfstudio's ``Model.get_outputs`` types it; ray bundles are refused. The
        outputs are tensors, except in training the step's deformed Gaussians (``geometry``)."""
        if not isinstance(camera, Cameras):
            raise TypeError(f"ds4d renders Cameras, got {type(camera).__name__}")
        camera = camera.flatten() if len(camera.shape) > 1 else camera
        times = camera.times.view(-1) if camera.times is not None else torch.full((len(camera),), self.canonical_time)
        if self.training and times.is_cuda:
            # a training batch is one frame's views (the datamanager serves them so): checked on the GPU
            # without waiting for it; the time stays there too (the frame features find their frames there)
            torch._assert_async(torch.all(times == times[0]))
            return self._render_at_time(camera, times[0])
        unique_times = torch.unique(times)
        if len(unique_times) == 1:
            return self._render_at_time(camera, float(unique_times[0]))
        if self.training:
            raise ValueError(f"a training batch must share one time, got {unique_times.tolist()}")
        parts = [self._render_at_time(camera[times == t], float(t)) for t in unique_times]
        order = torch.cat([torch.nonzero(times == t).view(-1) for t in unique_times]).argsort()
        return {
            key: torch.cat([part[key] for part in parts])[order] if key != "background" else parts[0][key]
            for key in parts[0]
        }

    def _render_at_time(
        self, camera: Cameras, time: float | Tensor, densify: bool = True, geometry: Optional[DeformedGaussians] = None
    ) -> Dict[str, Any]:
        """Render cameras at one time (with ``geometry`` when given, else the Gaussians deformed to ``time``);
        in training the outputs also carry the deformed Gaussians (``geometry``) and, in the dynamic stage,
        the HexPlane regularisers computed with them (``regularisers``)."""
        regularisers: Optional[Dict[str, Tensor]] = None
        if geometry is None and self.training and self.dynamic_stage:  # features + deformation + regularisers: a graph
            sampling = self.feature_sampling_points
            geometry, regularisers = self.deformation_step(self.means, self.quats, self.scales, time, sampling)
        gaussians = self.playback_geometry(time) if geometry is None else geometry
        means, quats, scales = gaussians.means, gaussians.quats, gaussians.scales
        opacities, features_dc, features_rest = self.opacities, self.features_dc, self.features_rest
        background = self._get_background_color()
        if self.crop_box is not None and not self.training:
            keep = self.crop_box.within(means).squeeze(-1)
            means, quats, scales = means[keep], quats[keep], scales[keep]
            opacities, features_dc, features_rest = opacities[keep], features_dc[keep], features_rest[keep]

        viewmats = cached_viewmats(camera.camera_to_worlds)  # once per cached frame batch in training
        Ks, width, height = intrinsics_and_size(camera, 1.0 / self._get_downscale_factor())
        Ks = Ks.to(self.device)
        self.last_size = (height, width)

        colors = torch.cat([features_dc[:, None, :], features_rest], dim=1)
        if self.config.sh_degree > 0:
            sh_degree: Optional[int] = min(self.step // self.config.sh_degree_interval, self.config.sh_degree)
        else:
            colors, sh_degree = torch.sigmoid(colors[:, 0, :]), None
        render_mode: RenderMode = "RGB+ED" if self.config.output_depth_during_training or not self.training else "RGB"

        render, alpha, info = rasterize_gaussians(
            means=means,
            quats=quats,
            scales=torch.exp(scales),
            opacities=torch.sigmoid(opacities).squeeze(-1),
            colors=colors,
            viewmats=viewmats,
            Ks=Ks,
            width=width,
            height=height,
            sh_degree=sh_degree,
            render_mode=render_mode,
            rasterize_mode=self.config.rasterize_mode,
            absgrad=self.config.use_absgrad,
        )
        if densify and self.training and torch.is_grad_enabled():  # densification statistics need gradients
            self.info = info
            self.strategy.step_pre_backward(self.gauss_params, self.optimizers, self.strategy_state, self.step, info)
        rgb = torch.clamp(render[..., :3] + (1.0 - alpha) * background, 0.0, 1.0)
        outputs: Dict[str, Any] = {"rgb": rgb, "accumulation": alpha, "background": background}
        if self.training:
            outputs["geometry"] = gaussians  # the step's deformed Gaussians, which the priors' renders reuse
            if regularisers is not None:
                outputs["regularisers"] = regularisers
        if render_mode == "RGB+ED":
            depth = render[..., 3:4]
            outputs["depth"] = torch.where(alpha > 0, depth, depth.detach().max())
        return outputs

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None) -> Dict[str, Tensor]:
        """Render one camera for the viewer, ``ns-render`` and ``ns-eval``: ``[H, W, C]`` outputs."""
        self.set_crop(obb_box)
        outputs = self.get_outputs(camera.to(self.device))
        if len(camera) != 1:
            return outputs
        single = {key: value[0] for key, value in outputs.items() if key != "background"}
        single["background"] = outputs["background"].expand_as(single["rgb"])
        return single

    # ------------------------------------------------------------------ losses and metrics
    def _ground_truth(self, batch: Dict[str, Tensor], background: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Batched ground truth ``[V, H, W, 3]`` composited over ``background``, and its alpha."""
        image = batch["image"]
        image = image[None] if image.ndim == 3 else image
        if self._get_downscale_factor() == 1:  # a dtype change and a copy: one for the batch
            image = self.get_gt_img(image)
        else:  # splatfacto's resize takes one image
            image = torch.stack([self.get_gt_img(view) for view in image])
        if image.shape[-1] != 4:
            return image, None
        alpha = image[..., 3:]
        return image[..., :3] * alpha + (1.0 - alpha) * background[..., :3], alpha

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        """The step's PSNR, moving-region PSNR and Gaussian count (``ds4d_ns.model_metrics``)."""
        gt_rgb, _ = self._ground_truth(batch, outputs["background"])
        return {**step_metrics(outputs["rgb"], gt_rgb, batch), "gaussian_count": self.num_points}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """Photometric (per-role weighted), alpha and HexPlane terms; subclasses add their own."""
        pred, config = outputs["rgb"], self.config
        gt_rgb, gt_alpha = self._ground_truth(batch, outputs["background"])
        roles = decode_roles(batch.get("role"), pred.shape[0]).to(self.device)
        weights = role_weights(roles, config.input_rgb_weight, config.pseudo_rgb_weight)
        alpha, motion_mask = outputs["accumulation"], batch.get("motion_mask")
        loss_dict = self.image_losses(pred, gt_rgb, weights, alpha, gt_alpha, motion_mask)  # one graph on a GPU
        if self.training and self.priors is not None:
            geometry = outputs.get("geometry")  # the step's deformation: the priors' renders reuse it

            def render(camera: Cameras) -> Dict[str, Tensor]:
                return self._render_at_time(camera, batch["time"], densify=False, geometry=geometry)

            loss_dict.update(
                self.priors.losses(
                    pred,
                    gt_rgb,
                    batch,
                    render=render,
                    ground_truth=self._ground_truth,
                    sds_step=self.step - self.config.static_stage_steps if self.dynamic_stage else None,
                )
            )
        if self.training and self.dynamic_stage:
            regularisers = outputs.get("regularisers") or self.deformation.hexplane.regularisers()
            loss_dict["plane_tv"] = self.config.plane_tv_weight * regularisers["plane_tv"]
            loss_dict["time_smoothness"] = self.config.time_smoothness_weight * regularisers["time_smoothness"]
            loss_dict["time_l1"] = self.config.time_l1_weight * regularisers["time_l1"]
        return loss_dict

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        if not self._lpips_tried and self.config.eval_lpips:  # built on first use, tried once
            self._lpips_tried, self._lpips = True, load_lpips_metric(self.device)
        gt_rgb = self._ground_truth(batch, outputs["background"][0, 0])[0][0]
        metrics = image_metrics(outputs["rgb"], gt_rgb, batch, self.psnr, self.ssim, self._lpips)
        return metrics, {"img": torch.cat([gt_rgb, outputs["rgb"]], dim=1)}
