"""Frame features of a ds4d dataset: extracted once, cached on disk, decoupled, reduced.

The training images are arranged as a ``[frames, views]`` grid (the input view first: it is the
"front" view that distance-aware fusion trusts most). Raw DINOv2 patch features are cached under
the user's cache folder (never in the data folder), keyed by the bytes of every image and mask,
the model and its weights mode and the input resolution, so a second run starts at once.
Decoupling (DSFD) and the channel reduction are cheap and recomputed from the cache each run.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.progress import track
from torch import Tensor

from ds4d_ns.data.dataset_format import ROLE_CODES, Role, decode_roles, middle_frame, role_name
from ds4d_ns.features import dsfd
from ds4d_ns.features.backbone import FrameFeatureExtractorConfig, load_backbone, patch_features, preprocess
from ds4d_ns.features.pca import fit_pca
from ds4d_ns.io.atomic import atomic_output
from ds4d_ns.options import FeatureMode, ReductionMode

CACHE_FORMAT_VERSION = 1
"""Bumped whenever the cached content changes meaning, so stale caches are ignored."""


@dataclass
class FrameGrid:
    """Training images arranged by frame (sorted by time) and view (input view first)."""

    image_paths: List[List[Path]]
    """``[frames][views]`` image files."""
    mask_paths: List[List[Optional[Path]]]
    """``[frames][views]`` mask files, None where the image carries its own alpha."""
    times: Float[Tensor, " frames"]
    camera_to_worlds: Float[Tensor, "frames views 3 4"]
    """OpenGL camera-to-world matrices (nerfstudio's convention)."""
    intrinsics: Float[Tensor, "frames views 3 3"]
    width: int
    height: int
    view_roles: List[Role]
    """Role of each view."""
    view_names: List[str]
    """``role_index`` per view, e.g. ``input_00``, ``pseudo_03``."""

    @property
    def middle_frame(self) -> int:
        """Row of the middle (canonical) frame: DSFD's reference, the frame the static stage fits."""
        return middle_frame(len(self.times))

    @property
    def front_view(self) -> int:
        """Index of the input (front) view."""
        return self.view_roles.index("input")


def frame_grid_from_dataset(dataset) -> FrameGrid:
    """Arrange a ds4d training dataset (nerfstudio InputDataset) by frame and view.

    Raises:
        ValueError: the dataset lacks the ds4d camera metadata, has no input view, or a view misses a frame.
    """
    cameras = dataset.cameras
    if not cameras.metadata or "frame_index" not in cameras.metadata or cameras.times is None:
        raise ValueError("frame features need a ds4d dataset (cameras with times and frame/view metadata)")
    view_indices = cameras.metadata["view_index"].view(-1).tolist()
    frame_indices = cameras.metadata["frame_index"].view(-1).tolist()
    roles = decode_roles(cameras.metadata.get("role"), len(frame_indices)).tolist()
    input_code = ROLE_CODES["input"]
    # the input view first: the "front" view that distance-aware fusion trusts most, found by its role
    view_keys = sorted({(int(r), int(v)) for r, v in zip(roles, view_indices)}, key=lambda k: (k[0] != input_code, k))
    if not any(role == input_code for role, _ in view_keys):
        raise ValueError("frame features need an input view among the training images")
    frames = sorted(set(int(f) for f in frame_indices))
    position = {(int(f), (int(r), int(v))): i for i, (f, r, v) in enumerate(zip(frame_indices, roles, view_indices))}
    masks = dataset.metadata.get("alpha_mask_filenames") or [None] * len(roles)
    grid_indices = []
    for frame in frames:
        row = []
        for key in view_keys:
            if (frame, key) not in position:
                raise ValueError(f"view {role_name(key[0])}_{key[1]:02d} has no image of frame {frame}")
            row.append(position[(frame, key)])
        grid_indices.append(row)
    index = torch.tensor(grid_indices)
    times = cameras.times.view(-1)[index[:, 0]]
    order = torch.argsort(times)
    index = index[order]
    return FrameGrid(
        image_paths=[[Path(dataset.image_filenames[i]) for i in row] for row in index.tolist()],
        mask_paths=[[Path(masks[i]) if masks[i] is not None else None for i in row] for row in index.tolist()],
        times=times[order].float(),
        camera_to_worlds=cameras.camera_to_worlds[index].float(),
        intrinsics=cameras.get_intrinsics_matrices()[index].float(),
        width=int(cameras.width[0]),
        height=int(cameras.height[0]),
        view_roles=[role_name(r) for r, _ in view_keys],
        view_names=[f"{role_name(r)}_{v:02d}" for r, v in view_keys],
    )


def load_rgb_on_white(image_path: Path, mask_path: Optional[Path]) -> Float[Tensor, "h w 3"]:
    """An image as RGB in [0, 1], its foreground (alpha or mask) composited over white."""
    from ds4d_ns.data.images import load_rgba  # the dataset's one decoder: every mode, 16-bit scaled

    rgba = load_rgba(image_path, mask_path).astype(np.float32) / 255.0
    alpha = rgba[..., 3:]
    return torch.from_numpy(rgba[..., :3] * alpha + (1.0 - alpha))


def default_cache_dir() -> Path:
    """$DS4D_CACHE_DIR, else $XDG_CACHE_HOME/ds4d_ns, else ~/.cache/ds4d_ns; frame features go in a subfolder."""
    if os.environ.get("DS4D_CACHE_DIR"):
        return Path(os.environ["DS4D_CACHE_DIR"]) / "frame_features"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "ds4d_ns" / "frame_features"


def cache_key(grid: FrameGrid, config: FrameFeatureExtractorConfig) -> str:
    """Hash of everything the raw features depend on: image and mask bytes, model, weights, resolution."""
    digest = hashlib.sha256()
    digest.update(f"v{CACHE_FORMAT_VERSION}|{config.model_id}|{config.weights}|{config.image_size}".encode())
    model_folder = Path(config.model_id)
    if model_folder.is_dir():  # a local model can be replaced in place: key on its files too
        for file in sorted(model_folder.rglob("*")):
            if file.is_file():
                stat = file.stat()
                digest.update(f"|{file.relative_to(model_folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for image_row, mask_row in zip(grid.image_paths, grid.mask_paths):
        for path in [*image_row, *mask_row]:
            digest.update(b"|" if path is None else hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


def extract_raw_features(
    grid: FrameGrid, config: FrameFeatureExtractorConfig, device: torch.device | str
) -> Float[Tensor, "frames views rows cols channels"]:
    """DINOv2 patch features of every image of the grid (fp16), from the cache when present."""
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else default_cache_dir()
    cache_file = cache_dir / f"{cache_key(grid, config)}.pt"
    name = config.describe()
    if cache_file.is_file():
        try:
            cached = torch.load(cache_file, map_location="cpu", weights_only=True)
            CONSOLE.log(f"Frame features ({escape(name)}): loaded from cache {escape(str(cache_file))}")
            return cached["features"]
        except Exception as err:  # a damaged cache file is recomputed, not fatal
            reason = escape(f"{cache_file} ({err})")
            CONSOLE.log(f"[yellow]Frame features ({escape(name)}): ignoring unreadable cache {reason}")
    backbone = load_backbone(config, device)
    num_frames, num_views = len(grid.image_paths), len(grid.view_names)
    flat = [(f, v) for f in range(num_frames) for v in range(num_views)]
    chunks: List[Tensor] = []
    batches = range(0, len(flat), config.batch_size)
    for start in track(batches, description=f"Frame features ({name})", transient=True):
        batch = flat[start : start + config.batch_size]
        images = torch.stack([load_rgb_on_white(grid.image_paths[f][v], grid.mask_paths[f][v]) for f, v in batch])
        pixels = preprocess(images.to(device), config.image_size)
        chunks.append(patch_features(backbone, pixels).to("cpu", torch.float16))
    del backbone
    features = torch.cat(chunks).reshape(num_frames, num_views, *chunks[0].shape[1:])
    with atomic_output(cache_file) as tmp:
        torch.save({"features": features, "model": name}, tmp)
    CONSOLE.log(
        f"Frame features ({name}): {num_frames} frames x {num_views} views, "
        f"{tuple(features.shape[2:])} per image, cached in {cache_file}"
    )
    return features


@dataclass
class PreparedFeatures:
    """Per-frame, per-view feature maps ready for projection sampling."""

    maps: Float[Tensor, "frames views channels rows cols"]
    dynamic_magnitude: Float[Tensor, "frames views rows cols"]
    """Norm of the full-width dynamic feature per patch (the paper's Fig. 4 heatmaps)."""


def prepare_features(
    raw: Float[Tensor, "frames views rows cols channels"],
    middle_frame: int,
    mode: FeatureMode,
    reduction: ReductionMode,
    dim: int,
    reference: dsfd.ReferenceMode = "middle+mean",
) -> PreparedFeatures:
    """Decouple (``dsfd``) or not (``frame``), then reduce the channels.

    ``pca``: the dynamic part and the frame feature are each projected on their own leading
    principal components (``dim / 2`` each; ``dim`` for the frame feature alone without
    decoupling), scaled to unit variance. ``linear``: the full-width features are only
    standardised per channel; the model learns the reduction (an ``nn.Linear`` to ``dim``).
    """
    if mode == "none":
        raise ValueError("prepare_features needs a feature mode other than 'none'")
    work_device = "cuda" if torch.cuda.is_available() else "cpu"
    features = raw.to(work_device, torch.float32)
    _, dynamic = dsfd.decouple(features, dsfd.reference_features(features, middle_frame, reference))
    magnitude = dynamic.norm(dim=-1)
    parts = [dynamic, features] if mode == "dsfd" else [features]
    if reduction == "pca":
        width = dim // len(parts)
        if width * len(parts) != dim:
            raise ValueError(f"feature dim {dim} must be even with DSFD (half dynamic, half frame feature)")
        parts = [fit_pca(part.reshape(-1, part.shape[-1]), width).project(part) for part in parts]
        maps = torch.cat(parts, dim=-1)
    elif reduction == "linear":
        maps = torch.cat(parts, dim=-1)
        flat = maps.reshape(-1, maps.shape[-1])
        maps = (maps - flat.mean(dim=0)) / flat.std(dim=0).clamp_min(1e-6)
    else:
        raise ValueError(f"unknown reduction {reduction!r}")
    return PreparedFeatures(
        maps=maps.permute(0, 1, 4, 2, 3).contiguous().to("cpu", torch.float16),
        dynamic_magnitude=magnitude.to("cpu", torch.float16),
    )


def grid_cameras(grid: FrameGrid) -> Tuple[Tensor, Tensor]:
    """The grid's OpenCV world-to-camera matrices ``[T, V, 4, 4]`` and intrinsics ``[T, V, 3, 3]``."""
    from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat

    frames, views = grid.camera_to_worlds.shape[:2]
    viewmats = opengl_c2w_to_opencv_viewmat(grid.camera_to_worlds.reshape(-1, 3, 4)).reshape(frames, views, 4, 4)
    return viewmats, grid.intrinsics
