"""Full-image datamanager that serves one timestamp per step: every training view of that frame.

DS4D renders all views of one time (the input view and the pseudo views) per optimisation step,
so the deformation runs once per step and the rasteriser draws the views in one batched call.
During the static stage only the middle frame (``ds4d_ns.data.dataset_format.canonical_frame``) is
served: the canonical Gaussians are the middle frame's shape (the seed points come from it too), and
the deformation field learns the offsets from there once the dynamic stage starts.

DS4D's frame features are a product of the data side: when ``frame_features`` is on, the datamanager
builds the feature bank of the training images (``ds4d_ns.features.feature_bank``) and puts it in the
training dataset's metadata, which nerfstudio hands to the model at construction. At training set-up
the features are extracted (or read from their cache); when a trained run is loaded the bank's maps
are zeros of the trained shape that the checkpoint fills, so no backbone weights are needed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type

import numpy as np
import numpy.typing as npt
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from torch import Tensor

from ds4d_ns.data.dataset_format import ROLE_CODES, canonical_frame, decode_roles
from ds4d_ns.errors import UserError
from ds4d_ns.features.feature_bank import FEATURE_BANK_KEY, FrameFeaturesConfig


class Ds4dDataset(InputDataset):
    """Input dataset that reads every image as RGBA through ``ds4d_ns.data.images`` (any PIL mode,
    16-bit scaled, the file named on failure) and turns a frame's ``mask_path`` into its alpha.

    Nerfstudio's own reader wraps 16-bit values modulo 256 and rejects grey+alpha images; the
    dataparser has decoded every file with the same function, so this never meets a bad one.
    """

    def get_numpy_image(self, image_idx: int) -> npt.NDArray[np.uint8]:
        from ds4d_ns.data.images import load_rgba

        mask_paths = self.metadata.get("alpha_mask_filenames")
        mask_path = mask_paths[image_idx] if mask_paths is not None else None
        return load_rgba(self._dataparser_outputs.image_filenames[image_idx], mask_path, self.scale_factor)


@dataclass
class Ds4dDatamanagerConfig(FullImageDatamanagerConfig):
    """Serves all training views of one timestamp per step."""

    _target: Type = field(default_factory=lambda: Ds4dDatamanager)
    frame_features: FrameFeaturesConfig = field(default_factory=FrameFeaturesConfig)
    """DS4D's frame features (DINOv2, DSFD, TSSF): built here from the training images for the model;
    ``--pipeline.datamanager.frame-features.mode none`` turns them off."""
    frame_sampling_seed: int = 0
    """Seed of the shuffled order in which frames are served in the dynamic stage."""
    pseudo_views_per_step: Optional[int] = None
    """Pseudo views served per dynamic-stage step beside the input view, drawn at random without
    repetition (None: all of them). Cheaper steps where rasterising is the cost (the CPU
    configurations); the static stage always serves every view."""


class Ds4dDatamanager(FullImageDatamanager[Ds4dDataset]):
    """Datamanager whose ``next_train`` returns a batch of cameras (all views at one time)."""

    config: Ds4dDatamanagerConfig
    static_stage_steps: int = 0
    """Steps at the start that serve only the middle frame: the model's ``static_stage_steps``, handed over
    by the pipeline (``ds4d_ns.schedule``), so the data and the model change stage at the same step."""

    def __init__(self, config: Ds4dDatamanagerConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        cameras = self.train_dataset.cameras
        metadata, times = cameras.metadata, cameras.times
        if metadata is None or "frame_index" not in metadata or times is None:
            # another dataparser chosen on the command line gives cameras without ds4d's frames
            raise UserError(
                "the ds4d datamanager needs a ds4d dataset (cameras with times and frame metadata): "
                "train with the ds4d-data dataparser (the method's default), not another dataparser subcommand"
            )
        frame_of_image = [int(frame) for frame in metadata["frame_index"].view(-1).tolist()]
        views_of_frame: Dict[int, List[int]] = {}
        for image_idx, frame in enumerate(frame_of_image):
            views_of_frame.setdefault(frame, []).append(image_idx)
        self.views_of_frame = views_of_frame
        time_of_frame = dict(zip(frame_of_image, times.view(-1).tolist()))
        self.middle_frame = canonical_frame(time_of_frame)
        """The frame the static stage serves."""
        self._frame_rng = random.Random(config.frame_sampling_seed)
        self._frame_queue: List[int] = []
        self._frame_batches: Dict[Tuple[int, ...], Tuple[Cameras, Dict[str, Tensor]]] = {}
        roles = decode_roles(metadata.get("role"), len(frame_of_image))
        self._is_pseudo = (roles == ROLE_CODES["pseudo"]).tolist()
        if config.frame_features.enabled:
            self.train_dataset.metadata[FEATURE_BANK_KEY] = self._feature_bank(config.frame_features)

    def _feature_bank(self, config: FrameFeaturesConfig):
        from ds4d_ns.features.feature_bank import build_feature_bank, empty_feature_bank

        # nerfstudio's trainer sets up with test_mode "val"; eval_setup ("test", "inference") loads a
        # checkpoint, which holds the maps: then no backbone runs and none is needed.
        if self.test_mode == "val":
            return build_feature_bank(self.train_dataset, config, self.device)
        return empty_feature_bank(self.train_dataset, config)

    def _load_images(self, split: Literal["train", "eval"], cache_images_device: Literal["cpu", "gpu"]):
        # "cpu" caching pins the images' memory for fast copies to a GPU, and pinning fails without
        # CUDA (nerfstudio also switches to it by itself for datasets over 500 images). Without a GPU,
        # "gpu" caching means "on self.device", the CPU: the same images, nothing pinned.
        if torch.device(self.device).type != "cuda":
            cache_images_device = "gpu"
        cached = super()._load_images(split, cache_images_device)
        self._add_motion_masks(cached, self.train_dataset if split == "train" else self.eval_dataset)
        return cached

    @staticmethod
    def _add_motion_masks(cached: List[Dict], dataset: InputDataset) -> None:
        """Give each cached image the moving region of its view (``ds4d_ns.evaluation.motion_region``):
        the pixels on which the model's ``psnr_moving`` is measured, for training and eval views."""
        from ds4d_ns.evaluation.motion_region import moving_regions_by_view

        metadata = dataset.cameras.metadata or {}
        if not cached or "view_index" not in metadata:
            return
        # a view is its role and its index within the role (the input view and pseudo view 0 differ)
        roles = decode_roles(metadata.get("role"), len(cached)).tolist()
        views = [role * 1000 + int(index) for role, index in zip(roles, metadata["view_index"].view(-1).tolist())]
        regions = moving_regions_by_view([entry["image"] for entry in cached], views)
        for entry, view in zip(cached, views):
            entry["motion_mask"] = regions[view]

    def _next_frame(self, step: int) -> int:
        if step < self.static_stage_steps:
            return self.middle_frame
        if not self._frame_queue:
            self._frame_queue = sorted(self.views_of_frame)
            self._frame_rng.shuffle(self._frame_queue)
        return self._frame_queue.pop()

    def _views_served(self, frame: int, step: int) -> List[int]:
        views = self.views_of_frame[frame]
        count = self.config.pseudo_views_per_step
        pseudo = [i for i in views if self._is_pseudo[i]]
        if count is None or step < self.static_stage_steps or count >= len(pseudo):
            return views
        chosen = set(self._frame_rng.sample(pseudo, count))
        return [i for i in views if not self._is_pseudo[i] or i in chosen]

    def _gather_views(self, image_indices: Tuple[int, ...]) -> Tuple[Cameras, Dict[str, Tensor]]:
        """Cameras, images, roles and moving regions of some training images, on the device."""
        cameras = self.train_dataset.cameras[torch.tensor(image_indices)].to(self.device)
        tensors = {
            "image": torch.stack([self.cached_train[i]["image"] for i in image_indices]).to(self.device),
            "role": decode_roles((cameras.metadata or {}).get("role"), len(image_indices)).to(self.device),
        }
        if "motion_mask" in self.cached_train[image_indices[0]]:
            tensors["motion_mask"] = torch.stack([self.cached_train[i]["motion_mask"] for i in image_indices])
        return cameras, tensors

    def _share_cached_images(self, image_indices: Tuple[int, ...], stacked: Tensor) -> None:
        """Point the cached images at their rows of a frame's stacked batch, so each image is held once."""
        for row, image_idx in enumerate(image_indices):
            if self.cached_train[image_idx]["image"].device == stacked.device:  # the same values, by construction
                self.cached_train[image_idx]["image"] = stacked[row]

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        """All training views of one frame: cameras of shape ``[V]`` and images ``[V, H, W, C]``."""
        frame = self._next_frame(step)
        image_indices = tuple(self._views_served(frame, step))
        if self.config.pseudo_views_per_step is None or step < self.static_stage_steps:
            # Every view of a frame: the same few batches all along, gathered once. Copying cameras
            # and indices to the GPU at each step made the host wait for it some twenty times a step.
            if image_indices not in self._frame_batches:
                self._frame_batches[image_indices] = self._gather_views(image_indices)
                self._share_cached_images(image_indices, self._frame_batches[image_indices][1]["image"])
            cameras, tensors = self._frame_batches[image_indices]
        else:
            cameras, tensors = self._gather_views(image_indices)
        batch: Dict = {**tensors, "image_idx": torch.tensor(image_indices), "frame_index": frame}
        # The generative priors condition on the views of this time and need their poses.
        batch["camera_to_worlds"] = cameras.camera_to_worlds
        batch["time"] = cameras.times.view(-1)[0] if cameras.times is not None else None
        return cameras, batch
