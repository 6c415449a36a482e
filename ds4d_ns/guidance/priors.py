"""The paper's generative priors as one object the model calls: LPIPS on pseudo views and multi-view SDS.

* LPIPS (VGG) between each pseudo view and its render (the DS4D supplement's L_lpips,
  ``ds4d_ns.losses.perceptual``).
* Multi-view SDS with Zero123 (``ds4d_ns.guidance.zero123``): after the static stage, each step renders
  one random view at the step's time, anchored on the input frame or the nearest pseudo view
  (``ds4d_ns.guidance.anchoring``, STAG4D's recipe), with the pose relative to that view.

The networks are frozen and only training uses them: :class:`TrainingPriors` is not an ``nn.Module``,
so they stay out of the model's state dict and checkpoints, and nothing needs them to render. The
model hands :meth:`TrainingPriors.losses` a render function that draws cameras at the step's time
with the step's deformed Gaussians, so SDS reuses the step's deformation instead of redoing it.

This module is imported with the model (an entry point's dependency): lpips, diffusers and
transformers load only when the priors are.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, TypeVar

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

from ds4d_ns.data.dataset_format import ROLE_CODES, decode_roles
from ds4d_ns.guidance.sds_config import SdsConfig
from ds4d_ns.options import WeightsMode

if TYPE_CHECKING:
    from ds4d_ns.guidance.zero123 import Zero123Guidance

RenderFunction = Callable[[Cameras], Dict[str, Tensor]]
"""Renders cameras at the step's time with the step's deformed Gaussians: ``rgb``, ``accumulation``
(``[V, H, W, C]``) and ``background``."""
GroundTruthFunction = Callable[[Dict[str, Tensor], Tensor], Tuple[Tensor, Optional[Tensor]]]
"""The model's ground truth of a batch composited over a background: ``[V, H, W, 3]`` and its alpha."""
V = TypeVar("V")
"""A cached value's type."""
_FIXED = ("fx", "fy", "cx", "cy", "width", "height")
"""Fields of the SDS camera that stay the same from step to step (:meth:`TrainingPriors._on_device`)."""


class TrainingPriors:
    """The frozen networks of the prior losses and the state of SDS's view sampling.

    Args:
        lpips_weight: weight of the LPIPS loss.
        sds: SDS settings.
        lpips: LPIPS network (``build_lpips_vgg``), or None for no LPIPS loss.
        zero123: Zero123 guidance, or None for no SDS.
    """

    def __init__(
        self,
        lpips_weight: float,
        sds: SdsConfig,
        lpips: Optional[torch.nn.Module] = None,
        zero123: Optional[Zero123Guidance] = None,
        cuda_graphs: bool = False,
    ) -> None:
        from ds4d_ns.cuda_graphs import GraphedFunction

        self.lpips_weight = lpips_weight
        self.sds = sds
        self.lpips = lpips
        self.zero123 = zero123
        self._lpips_graph = GraphedFunction(self._mean_lpips, enabled=cuda_graphs)
        """LPIPS forward + backward as CUDA graphs on a GPU (the VGG's shapes never change)."""
        self._sds_camera: Optional[Cameras] = None
        """The SDS view's camera on the device, rewritten at each step (see :meth:`_on_device`)."""
        self._sds_camera_key: Optional[tuple] = None
        self._pseudo_rows: Dict[Tuple[int, ...], Tensor] = {}
        """The rows of a batch's pseudo views by its image indices, on the device (a boolean selection
        would make the host wait for the GPU at every step)."""
        self._view_rng = random.Random(sds.seed)
        self._conditions: Dict[int, Tuple[Tensor, Tensor]] = {}
        """Zero123's condition (CLIP embedding, VAE latents) of each training image by its index: the
        images do not change during training, and encoding one anew cost a CLIP ViT-L/14 and a VAE
        encoder call at every SDS step."""
        self._view_poses: Dict[Tuple[int, ...], Tuple[List[int], List[float], List[float], float]] = {}
        """Roles, elevations, azimuths (degrees) and the input's radius of a batch's views by their image
        indices: fixed for a set of views, and reading them from the device made the host wait each step."""

    @classmethod
    def load(
        cls,
        lpips_weight: float,
        lpips_backbone: WeightsMode,
        sds: SdsConfig,
        device: torch.device | str,
        cuda_graphs: bool = False,
    ) -> TrainingPriors:
        """Load the networks of the losses that are on (a weight above 0); on a GPU they run as CUDA graphs
        when ``cuda_graphs`` is True.

        Raises:
            PerceptualWeightsUnavailable, GuidanceWeightsUnavailable: weights missing; the message names them
                and the flag that turns the loss off.
        """
        lpips, zero123 = None, None
        if lpips_weight > 0:
            from ds4d_ns.losses.perceptual import build_lpips_vgg

            lpips = build_lpips_vgg(lpips_backbone).to(device)
        if sds.weight > 0:
            from nerfstudio.utils.rich_utils import CONSOLE
            from rich.markup import escape

            from ds4d_ns.guidance.zero123 import Zero123Guidance

            zero123 = Zero123Guidance(sds, device, cuda_graphs)
            CONSOLE.log(f"SDS guidance: {escape(sds.describe())}")
        return cls(lpips_weight, sds, lpips, zero123, cuda_graphs)

    def losses(
        self,
        renders: Float[Tensor, "views h w 3"],
        targets: Float[Tensor, "views h w 3"],
        batch: Dict[str, Tensor],
        render: RenderFunction,
        ground_truth: GroundTruthFunction,
        sds_step: Optional[int],
    ) -> Dict[str, Tensor]:
        """The prior terms of one training step.

        Args:
            renders: the batch's views as rendered.
            targets: their ground truth, over the renders' background.
            batch: the datamanager's batch (images, roles, camera poses, time).
            render: draws cameras at the batch's time with the step's Gaussians.
            ground_truth: the model's ground truth of a batch over a background (conditions SDS).
            sds_step: steps since the dynamic stage began; None in the static stage (no SDS then).
        """
        loss_dict: Dict[str, Tensor] = {}
        if self.lpips is not None:
            loss_dict.update(self.lpips_loss(renders, targets, batch.get("role"), self._image_indices(batch)))
        if self.zero123 is not None and sds_step is not None:
            loss_dict.update(self.sds_loss(batch, render, ground_truth, sds_step))
        return loss_dict

    def lpips_loss(
        self,
        renders: Float[Tensor, "views h w 3"],
        targets: Float[Tensor, "views h w 3"],
        roles: Optional[Tensor],
        image_indices: Optional[Tuple[int, ...]] = None,
    ) -> Dict[str, Tensor]:
        """LPIPS between the pseudo views and their renders (the supplement's L_lpips); nothing without one.

        ``image_indices`` (the batch's training images) keys the pseudo views' rows, read from ``roles`` once."""

        def pseudo_rows() -> Tensor:
            pseudo = decode_roles(roles, renders.shape[0]) == ROLE_CODES["pseudo"]
            return torch.nonzero(pseudo.cpu()).view(-1).to(renders.device)

        rows = _memoised(self._pseudo_rows, image_indices, pseudo_rows)
        if self.lpips is None or rows.numel() == 0:
            return {}
        (distance,) = self._lpips_graph(renders[rows], targets[rows])
        return {"lpips_loss": self.lpips_weight * distance}

    def _mean_lpips(self, renders: Tensor, targets: Tensor) -> Tuple[Tensor]:
        from ds4d_ns.losses.perceptual import lpips_distance

        assert self.lpips is not None
        return (lpips_distance(self.lpips, renders, targets).mean(),)

    def sds_loss(
        self, batch: Dict[str, Tensor], render: RenderFunction, ground_truth: GroundTruthFunction, sds_step: int
    ) -> Dict[str, Tensor]:
        """Multi-view SDS on one random view at the batch's time, anchored on the input or a pseudo view."""
        from ds4d_ns.guidance.anchoring import sample_sds_view, wrap_degrees
        from ds4d_ns.guidance.sds import weight_after_encoder
        from ds4d_ns.guidance.zero123 import Zero123Guidance
        from ds4d_ns.rendering.orbit_cameras import orbit_cameras

        guidance = self.zero123
        assert guidance is not None, "SDS needs Zero123: TrainingPriors.load with sds.weight > 0"
        device = batch["camera_to_worlds"].device
        image_indices = self._image_indices(batch)
        roles, elevations, azimuths, input_radius = _memoised(
            self._view_poses, image_indices, lambda: self._read_view_poses(batch)
        )
        input_index = roles.index(ROLE_CODES["input"])
        pseudo_indices = [i for i, role in enumerate(roles) if role == ROLE_CODES["pseudo"]]
        # azimuths relative to the input camera: "near the front" means near the input view
        front = azimuths[input_index]
        view = sample_sds_view(
            self._view_rng,
            [(wrap_degrees(azimuths[i] - front), elevations[i]) for i in pseudo_indices],
            input_elevation_deg=elevations[input_index],
            elevation_range_deg=self.sds.elevation_range,
            input_probability=self.sds.input_probability,
        )
        condition_index = input_index if view.condition is None else pseudo_indices[view.condition]
        camera = orbit_cameras(
            [view.azimuth_deg + front],
            [0.0],  # the batch's time, written on the device below
            elevation_deg=view.elevation_deg,
            radius=input_radius,
            resolution=self.sds.resolution,
        )
        drawn = render(self._on_device(camera, batch["time"]))
        white = torch.ones(3, device=device)
        rgb = (drawn["rgb"] + (1.0 - drawn["accumulation"]) * (white - drawn["background"])).clamp(0, 1)  # on white

        def encode_condition() -> Tuple[Tensor, Tensor]:
            condition, _ = ground_truth({"image": batch["image"][condition_index : condition_index + 1]}, white)
            return guidance.embed_condition(condition)

        key = image_indices[condition_index] if image_indices is not None else None
        embeds, latents = _memoised(self._conditions, key, encode_condition)
        pose = Zero123Guidance.pose_embedding(  # filled on the device: a copy there would wait for the GPU
            torch.full((1,), view.delta_elevation_deg, device=device),
            torch.full((1,), view.delta_azimuth_deg, device=device),
        )
        alpha = self.sds.input_condition_weight if view.condition is None else self.sds.pseudo_condition_weight
        weighted = weight_after_encoder(
            rgb, self.sds.weight * alpha, lambda renders: guidance.sds_loss(renders, embeds, latents, pose, sds_step)
        )
        return {"sds_loss": weighted}

    def _on_device(self, camera: Cameras, time: Tensor) -> Cameras:
        """The SDS ``camera`` (on the host) at ``time`` on ``time``'s device, without waiting for the GPU: its
        pose is copied from pinned memory into a camera kept there, whose other fields (intrinsics, size: the
        same at every step) stay as they are. ``Cameras.to`` copies from pageable memory, each copy a wait."""
        key = (tuple(camera.shape), str(time.device), *(float(getattr(camera, name).view(-1)[0]) for name in _FIXED))
        if self._sds_camera is None or key != self._sds_camera_key:
            self._sds_camera, self._sds_camera_key = camera.to(time.device), key
        else:
            source = camera.camera_to_worlds.pin_memory() if time.is_cuda else camera.camera_to_worlds
            self._sds_camera.camera_to_worlds.copy_(source, non_blocking=True)
        kept = self._sds_camera
        assert kept.times is not None
        kept.times.copy_(time.reshape(1, 1))
        return kept

    @staticmethod
    def _image_indices(batch: Dict[str, Tensor]) -> Optional[Tuple[int, ...]]:
        """The training-image index of each view of the batch (the datamanager's ``image_idx``, on the
        host), the key of the caches; None when the batch has none (then nothing is cached)."""
        indices = batch.get("image_idx")
        if indices is None:
            return None
        return tuple(int(i) for i in indices.view(-1).tolist())

    @staticmethod
    def _read_view_poses(batch: Dict[str, Tensor]) -> Tuple[List[int], List[float], List[float], float]:
        """Roles, elevations and azimuths (degrees) of the batch's views and the input camera's radius."""
        positions = batch["camera_to_worlds"][:, :3, 3].float()
        roles = decode_roles(batch.get("role"), positions.shape[0]).tolist()
        radius = positions.norm(dim=-1)
        elevations = torch.rad2deg(torch.asin((positions[:, 2] / radius).clamp(-1, 1))).tolist()
        azimuths = torch.rad2deg(torch.atan2(positions[:, 0], -positions[:, 1])).tolist()
        return roles, elevations, azimuths, float(radius[roles.index(ROLE_CODES["input"])])


def _memoised(cache: Dict[Any, V], key: Optional[Any], compute: Callable[[], V]) -> V:
    """``cache[key]``, computed and stored on first use; computed every time when ``key`` is None."""
    if key is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]
