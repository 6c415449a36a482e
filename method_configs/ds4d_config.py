"""Method configurations of the ds4d plugin, all made by one factory.

``ds4d``           DS4D-DA: DSFD-decoupled DINOv2 frame features fused by distance-aware TSSF, the
                   LPIPS and Zero123 SDS priors, the paper's schedule (1000 static + 6000 dynamic
                   steps) on a GPU.
``ds4d-ga``        DS4D-GA: the same with global-aware fusion.
``ds4d-base``      no frame features and no priors (HexPlane deformation only): needs no pretrained weights.
``ds4d-cpu``       ``ds4d`` small enough for machines without CUDA: half-size images, a short
                   schedule, features at 224 px, LPIPS but no SDS.
``ds4d-base-cpu``  ``ds4d-base`` at that size.

The GPU configurations ask for CUDA; on a machine without it ``ns-train`` runs them on the CPU
instead, saying so in one line (``ds4d_ns.run_setup``, from ``Ds4dTrainerConfig.save_config``), and
every run is filed under its dataset folder's name with the dataset path stored absolute.

The paper's ablation rows are switches of the config (see ``make_ds4d_config``):
A: ``ds4d-base --pipeline.model.random-init True``; B: ``ds4d-base``; C: B with
``--pipeline.model.lpips-loss-weight 1``; D: ``ds4d`` with ``--pipeline.datamanager.frame-features.mode
frame`` and ``.fusion front``; E: ``mode dsfd, fusion front``; F: ``dsfd, mean``; G: ``ds4d-ga``;
H: ``ds4d``. (Add ``--pipeline.model.sds.weight 1`` to A-C to keep SDS in every row, as the paper's
baseline has it.)

This module is an entry point that nerfstudio imports on every ``ns-train``: it imports only
configuration classes (the heavy parts load when a model is built).
"""

from __future__ import annotations

from typing import TypedDict

from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.plugins.types import MethodSpecification

from ds4d_ns.data.datamanager import Ds4dDatamanagerConfig
from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig
from ds4d_ns.ds4d_model import Ds4dModelConfig
from ds4d_ns.features.backbone import FrameFeatureExtractorConfig
from ds4d_ns.features.feature_bank import FrameFeaturesConfig
from ds4d_ns.fields.tssf import FusionMode
from ds4d_ns.guidance.sds_config import SdsConfig
from ds4d_ns.optimizers import Ds4dAdamConfig
from ds4d_ns.options import FeatureMode
from ds4d_ns.pipeline import Ds4dPipelineConfig
from ds4d_ns.schedule import TrainingSchedule
from ds4d_ns.schedulers import LogLinearDecaySchedulerConfig
from ds4d_ns.trainer import Ds4dTrainerConfig


def _adam(lr: float, max_steps: int, lr_final: float | None = None) -> dict:
    return {
        "optimizer": Ds4dAdamConfig(lr=lr, eps=1e-15),  # fused on CUDA
        "scheduler": LogLinearDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps) if lr_final else None,
    }


def make_ds4d_config(
    method_name: str = "ds4d",
    static_steps: int = 1000,
    dynamic_steps: int = 6000,
    cpu: bool = False,
    frame_features: FeatureMode = "dsfd",
    fusion: FusionMode = "da",
    priors: bool = True,
) -> Ds4dTrainerConfig:
    """Trainer configuration of a ds4d method.

    Every step count (the stages, warm-up, densification stop, learning-rate decays, the run's length)
    comes from ``static_steps`` and ``dynamic_steps`` through ``ds4d_ns.schedule.TrainingSchedule``; at
    set-up the derived ones follow ``--max-num-iterations`` and ``--pipeline.model.static-stage-steps``.

    Args:
        method_name: CLI name of the method.
        static_steps: steps fitting the canonical Gaussians on the middle frame.
        dynamic_steps: steps training canonical Gaussians and deformation over all frames.
        cpu: small configuration for machines without CUDA (half-size images, one pseudo view per
            dynamic step, larger deformation steps, CPU device).
        frame_features: none, frame (no decoupling) or dsfd.
        fusion: front, mean, ga or da (used when there are frame features).
        priors: the paper's generative priors: LPIPS (VGG) on pseudo views, and multi-view SDS with
            Zero123 on a GPU (on a CPU a Zero123 step takes seconds: SDS stays off there).
    """
    schedule = TrainingSchedule(static_steps, dynamic_steps)  # the one source of every step count below
    total = schedule.total
    # The CPU schedule has a twelfth of the dynamic steps: at twice the GPU rates the sample's rotor
    # did not move at all (front-view motion recall 0.003); at ten times it follows the ground truth
    # (0.79). benchmarks/RESULTS.md, "CPU demo".
    deformation_lr_scale = 10.0 if cpu else 1.0
    model = Ds4dModelConfig(
        static_stage_steps=schedule.static_steps,
        warmup_length=schedule.warmup_length,
        refine_every=100 if not cpu else 50,
        stop_split_at=schedule.stop_split_at,
        hexplane_resolution=64 if not cpu else 16,
        hexplane_multires=(1, 2) if not cpu else (1,),
        hexplane_features=32 if not cpu else 16,
        num_random=10000 if not cpu else 2000,
        lpips_loss_weight=1.0 if priors else 0.0,
        sds=SdsConfig(weight=1.0 if priors and not cpu else 0.0),
    )
    datamanager = Ds4dDatamanagerConfig(
        dataparser=Ds4dDataParserConfig(),
        cache_images_type="uint8",
        # CPU: half-size images (128 px for the sample): at 64 px its rotor blades, 1-2 px wide, were
        # lost altogether. Rasterising is most of a CPU step, so each dynamic step draws the input view
        # and one random pseudo view instead of all seven (every view still serves the static stage).
        camera_res_scale_factor=1.0 if not cpu else 0.5,
        pseudo_views_per_step=None if not cpu else 1,
        frame_features=FrameFeaturesConfig(
            mode=frame_features,
            fusion=fusion,
            extractor=FrameFeatureExtractorConfig(image_size=448 if not cpu else 224),
        ),
    )
    return Ds4dTrainerConfig(
        method_name=method_name,
        steps_per_eval_image=500 if not cpu else 100,
        steps_per_eval_batch=0,
        steps_per_save=2000 if not cpu else 200,
        steps_per_eval_all_images=total,
        max_num_iterations=total,
        mixed_precision=False,
        save_only_latest_checkpoint=True,
        machine=MachineConfig(device_type="cpu" if cpu else "cuda"),
        pipeline=Ds4dPipelineConfig(datamanager=datamanager, model=model),
        optimizers={
            "means": _adam(1.6e-4, total, 1.6e-6),
            "features_dc": _adam(0.0025, total),
            "features_rest": _adam(0.0025 / 20, total),
            "opacities": _adam(0.05, total),
            "scales": _adam(0.005, total),
            "quats": _adam(0.001, total),
            # Five times the 4D-GS grid rate and the paper's MLP rate (1.6e-3 and 1.6e-4): with the
            # zero-initialised heads, motion was learnt too slowly at those rates (windmill eval PSNR
            # 25.8 -> 30.5 dB on an H100, benchmarks/RESULTS.md). The short CPU schedule takes
            # larger steps still (deformation_lr_scale above).
            "deformation_grid": _adam(8e-3 * deformation_lr_scale, total, 8e-5 * deformation_lr_scale),
            "deformation_mlp": _adam(8e-4 * deformation_lr_scale, total, 8e-6 * deformation_lr_scale),
            # TSSF (fusion weights, and the reduction layer when it is learnt): the paper's rate.
            "feature_fusion": _adam(1.6e-4, total, 1.6e-6),
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15, quit_on_train_completion=True),
        vis="viewer" if not cpu else "tensorboard",
    )


class _Schedule(TypedDict):
    """Keyword arguments of :func:`make_ds4d_config` that set a method's schedule and device."""

    static_steps: int
    dynamic_steps: int
    cpu: bool


_CPU_SCHEDULE: _Schedule = {"static_steps": 50, "dynamic_steps": 500, "cpu": True}

ds4d_method = MethodSpecification(
    config=make_ds4d_config(),
    description="DS4D-DA: dynamic 3D Gaussians with DSFD frame features and distance-aware TSSF (needs DINOv2)",
)

ds4d_ga_method = MethodSpecification(
    config=make_ds4d_config(method_name="ds4d-ga", fusion="ga"),
    description="DS4D-GA: DSFD frame features with global-aware TSSF fusion (needs DINOv2)",
)

ds4d_base_method = MethodSpecification(
    config=make_ds4d_config(method_name="ds4d-base", frame_features="none", priors=False),
    description="ds4d without frame features or priors: HexPlane deformation only, no pretrained weights needed",
)

ds4d_cpu_method = MethodSpecification(
    config=make_ds4d_config(method_name="ds4d-cpu", **_CPU_SCHEDULE),
    description="ds4d (DS4D-DA) at low resolution with a short schedule, for machines without CUDA",
)

ds4d_base_cpu_method = MethodSpecification(
    config=make_ds4d_config(method_name="ds4d-base-cpu", frame_features="none", priors=False, **_CPU_SCHEDULE),
    description="ds4d-base at low resolution with a short schedule, for machines without CUDA",
)
