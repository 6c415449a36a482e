"""Dataparser for the ds4d dataset format (see ``ds4d_ns.data.dataset_format``).

Splits: ``train`` holds the input and pseudo views; ``val`` and ``test`` hold the ``eval`` views
when the dataset has any, else the input views. Everything is validated before a tensor is built,
so bad input stops the run with a message naming the file and the problem, before any training:
every image and mask is decoded in full once (``ds4d_ns.data.images``), every camera's rotation
is checked to be a rotation, and files outside the dataset folder are refused unless allowed.

Nerfstudio imports this module while its dataparser registry is still being built: it must not
import datamanagers, pipelines or method configs.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification
from nerfstudio.utils.rich_utils import CONSOLE

from ds4d_ns.data.dataset_format import REQUIRED_FRAME_KEYS, ROLE_CODES, ROLES, TRAINING_ROLES, TRANSFORMS_NAME, Role
from ds4d_ns.data.images import ImageReadError, decode_image
from ds4d_ns.errors import UserError

ROTATION_TOLERANCE = 1e-2
"""Largest accepted deviation of a camera's rotation block from orthonormal with determinant 1: loose
enough for matrices written with three decimals, tight enough to catch zero, scaled, sheared or
mirrored matrices (which make the camera singular or flip the image)."""
TIME_TOLERANCE = 1e-6
"""Largest difference between two times taken as the same time: one frame's time in different views must agree
within it, and consecutive frames must be further apart than it."""


class DatasetError(UserError):
    """The dataset on disk does not follow the ds4d format; the message names the file."""


@dataclass
class Ds4dDataParserConfig(DataParserConfig):
    """Reads a ds4d dataset: input, pseudo and eval views of a moving object over time."""

    _target: Type = field(default_factory=lambda: Ds4dDataParser)
    data: Path = Path("data/ds4d-sample")
    """Dataset folder holding transforms.json."""
    load_seed_points: bool = True
    """Load the dataset's ply_file_path (if any) as initial Gaussian centres."""
    scene_box_margin: float = 0.25
    """Fraction of the seed points' extent added on every side of their box to make the scene box."""
    default_scene_half_extent: float = 1.0
    """Half side of the cube scene box used when the dataset has no seed points."""
    allow_outside_paths: bool = False
    """Read images, masks and the PLY that transforms.json places outside the dataset folder (absolute
    paths, '..', symlinks leading out). Off by default: a dataset from elsewhere could otherwise make
    training read any image on this machine into a model that may be shared."""


@dataclass
class _Frame:
    record: Dict[str, Any]
    image_path: Path
    mask_path: Optional[Path]
    c2w: np.ndarray
    role: Role
    view_index: int
    frame_index: int
    time: float


class Ds4dDataParser(DataParser):
    """Parses ``transforms.json`` into cameras with times, roles and views; never writes to ``data``."""

    config: Ds4dDataParserConfig
    includes_time: bool = True

    def __init__(self, config: Ds4dDataParserConfig):
        super().__init__(config=config)
        self._frames: Optional[List[_Frame]] = None
        self._meta: Dict[str, Any] = {}

    # ----------------------------------------------------------------------------- reading
    def _transforms_path(self) -> Path:
        data = Path(self.config.data)
        if data.is_file() and data.name.endswith(".json"):
            return data
        return data / TRANSFORMS_NAME

    def _load_frames(self) -> List[_Frame]:
        """Read and validate every frame once; later splits reuse the result."""
        if self._frames is not None:
            return self._frames
        path = self._transforms_path()
        if not path.exists():
            raise DatasetError(f"{path}: no such file (a ds4d dataset folder needs a {TRANSFORMS_NAME})")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DatasetError(f"{path}: cannot be read as JSON ({err})") from err
        except RecursionError as err:  # json recurses once per nesting level
            raise DatasetError(f"{path}: cannot be read as JSON (nested too deeply)") from err
        if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
            raise DatasetError(f"{path}: expected an object with a non-empty 'frames' list")
        root = path.parent
        allow_outside = self.config.allow_outside_paths
        frames = [self._parse_frame(path, root, i, record, allow_outside) for i, record in enumerate(meta["frames"])]
        self._check_consistency(path, frames)
        self._meta = meta
        self._frames = frames
        return frames

    @staticmethod
    def _parse_frame(path: Path, root: Path, i: int, record: Any, allow_outside: bool = False) -> _Frame:
        where = f"{path}: frames[{i}]"
        if not isinstance(record, dict):
            raise DatasetError(f"{where} is not an object")
        missing = [key for key in REQUIRED_FRAME_KEYS if key not in record]
        if missing:
            raise DatasetError(f"{where} lacks required keys {missing}")
        role = record["role"]
        if role not in ROLES:
            raise DatasetError(f"{where} has role {role!r}; expected one of {list(ROLES)}")
        try:
            c2w = np.asarray(record["transform_matrix"], dtype=np.float64)
            intrinsics = [float(record[k]) for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")]
            time = float(record["time"])
            frame_index, view_index = int(record["frame_index"]), int(record["view_index"])
        except (TypeError, ValueError) as err:
            raise DatasetError(f"{where} has a non-numeric camera field ({err})") from err
        if c2w.shape not in ((4, 4), (3, 4)):
            raise DatasetError(f"{where}.transform_matrix has shape {c2w.shape}; expected 4x4 or 3x4")
        if not np.isfinite(c2w).all():
            raise DatasetError(f"{where}.transform_matrix contains NaN or infinity")
        defect = rotation_defect(c2w)
        if defect > ROTATION_TOLERANCE:
            raise DatasetError(
                f"{where} ({record['file_path']}): the rotation part of transform_matrix is not a rotation "
                f"(off by {defect:.3g} from orthonormal with determinant 1, determinant "
                f"{np.linalg.det(c2w[:3, :3]):.3g}); give this frame a rigid camera-to-world pose"
            )
        if not all(math.isfinite(v) for v in intrinsics) or min(intrinsics) <= 0:
            raise DatasetError(f"{where} has non-finite or non-positive intrinsics {intrinsics}")
        if not (math.isfinite(time) and 0.0 <= time <= 1.0):
            raise DatasetError(f"{where} has time {record['time']}; times must lie in [0, 1]")
        image_path = dataset_file(root, where, "file_path", record["file_path"], allow_outside)
        mask_path = None
        if record.get("mask_path"):
            mask_path = dataset_file(root, where, "mask_path", record["mask_path"], allow_outside)
        return _Frame(record, image_path, mask_path, c2w[:3, :4], role, view_index, frame_index, time)

    @staticmethod
    def _check_consistency(path: Path, frames: List[_Frame]) -> None:
        input_frames = sorted({f.frame_index for f in frames if f.role == "input"})
        if not input_frames:
            raise DatasetError(f"{path}: no frame has role 'input' (the monocular video's camera)")
        sizes = {(int(f.record["w"]), int(f.record["h"])) for f in frames}
        if len(sizes) > 1:
            raise DatasetError(f"{path}: frames declare different image sizes {sorted(sizes)}; all views must match")
        ((width, height),) = sizes
        time_of_frame: Dict[int, float] = {}
        views: Dict[Tuple[str, int], List[int]] = defaultdict(list)
        for f in frames:
            views[(f.role, f.view_index)].append(f.frame_index)
            seen = time_of_frame.setdefault(f.frame_index, f.time)
            if abs(seen - f.time) > TIME_TOLERANCE:
                raise DatasetError(
                    f"{path}: frame_index {f.frame_index} has times {seen} and {f.time} in different views"
                )
        # Time is what the deformation field sees: two frames at one time would be fitted as one instant seen two
        # ways, and frames out of time order would play the motion back shuffled, both without a word.
        in_order = sorted(time_of_frame.items())
        for (earlier, earlier_time), (later, later_time) in zip(in_order, in_order[1:]):
            if later_time - earlier_time <= TIME_TOLERANCE:
                raise DatasetError(
                    f"{path}: frame_index {earlier} has time {earlier_time} and frame_index {later} has time "
                    f"{later_time}; times must increase strictly with frame_index (frame i of n at i / (n - 1))"
                )
        expected = set(input_frames)
        for (role, view_index), indices in sorted(views.items()):
            lacking = sorted(expected - set(indices))
            if lacking:
                raise DatasetError(f"{path}: view {role} {view_index} lacks frames {lacking}")
            duplicated = sorted({i for i in indices if indices.count(i) > 1})
            if duplicated:
                raise DatasetError(f"{path}: view {role} {view_index} lists frames {duplicated} more than once")
        for f in frames:
            for file in (f.image_path, f.mask_path):
                if file is None:
                    continue
                if not file.is_file():
                    raise DatasetError(f"{file}: image listed in {path} does not exist")
                try:
                    # Decoded in full now, as training will decode it, so nothing accepted here fails later.
                    decoded = decode_image(file)
                except ImageReadError as err:
                    raise DatasetError(str(err)) from err
                size = decoded.size
                if size != (width, height):
                    raise DatasetError(f"{file}: image is {size[0]}x{size[1]} but {path} declares {width}x{height}")
                if file == f.image_path and f.mask_path is None and not decoded.has_alpha:
                    raise DatasetError(
                        f"{file}: image has no alpha channel (PIL mode {decoded.mode}) and the frame has no mask_path"
                    )

    # ----------------------------------------------------------------------------- outputs
    def _split_frames(self, frames: List[_Frame], split: str) -> List[_Frame]:
        roles: Tuple[Role, ...]
        if split == "train":
            roles = TRAINING_ROLES
        elif any(f.role == "eval" for f in frames):
            roles = ("eval",)
        else:
            roles = ("input",)
        chosen = [f for f in frames if f.role in roles]
        return sorted(chosen, key=lambda f: (f.frame_index, ROLE_CODES[f.role], f.view_index))

    def _load_seed_points(self, path: Path) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        ply_name = self._meta.get("ply_file_path")
        if not self.config.load_seed_points or not ply_name:
            return None
        from plyfile import PlyData, PlyParseError

        ply_path = dataset_file(path.parent, f"{path}:", "ply_file_path", ply_name, self.config.allow_outside_paths)
        try:
            vertices = PlyData.read(str(ply_path))["vertex"]
            xyz = np.stack([vertices[k] for k in ("x", "y", "z")], axis=-1).astype(np.float32)
        except (OSError, KeyError, ValueError, PlyParseError) as err:
            raise DatasetError(f"{ply_path}: cannot read vertex positions from the PLY ({err})") from err
        if xyz.shape[0] < 4 or not np.isfinite(xyz).all():
            raise DatasetError(f"{ply_path}: needs at least 4 finite points, got {xyz.shape[0]}")
        names = vertices.data.dtype.names or ()
        if all(k in names for k in ("red", "green", "blue")):
            rgb = np.stack([vertices[k] for k in ("red", "green", "blue")], axis=-1).astype(np.uint8)
        else:
            rgb = np.full_like(xyz, 128, dtype=np.uint8)
        return torch.from_numpy(xyz), torch.from_numpy(rgb)

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs: Optional[Dict]) -> DataparserOutputs:
        frames = self._load_frames()
        path = self._transforms_path()
        chosen = self._split_frames(frames, split)
        width, height = int(frames[0].record["w"]), int(frames[0].record["h"])

        def column(key: str) -> torch.Tensor:
            return torch.tensor([float(f.record[key]) for f in chosen], dtype=torch.float32)[:, None]

        cameras = Cameras(
            camera_to_worlds=torch.from_numpy(np.stack([f.c2w for f in chosen])).float(),
            fx=column("fl_x"),
            fy=column("fl_y"),
            cx=column("cx"),
            cy=column("cy"),
            width=torch.full((len(chosen), 1), width, dtype=torch.int64),
            height=torch.full((len(chosen), 1), height, dtype=torch.int64),
            camera_type=CameraType.PERSPECTIVE,
            times=torch.tensor([f.time for f in chosen], dtype=torch.float32)[:, None],
            metadata={
                "role": torch.tensor([ROLE_CODES[f.role] for f in chosen])[:, None],
                "view_index": torch.tensor([f.view_index for f in chosen])[:, None],
                "frame_index": torch.tensor([f.frame_index for f in chosen])[:, None],
            },
        )

        seed = self._load_seed_points(path)
        if seed is not None:
            low, high = seed[0].min(dim=0).values, seed[0].max(dim=0).values
            pad = (high - low).clamp_min(1e-3) * self.config.scene_box_margin
            aabb = torch.stack([low - pad, high + pad])
        else:
            half = self.config.default_scene_half_extent
            aabb = torch.tensor([[-half] * 3, [half] * 3], dtype=torch.float32)

        metadata: Dict[str, Any] = {"num_frames": len({f.frame_index for f in frames})}
        if seed is not None:
            metadata.update(points3D_xyz=seed[0], points3D_rgb=seed[1])
        mask_paths = [f.mask_path for f in chosen]
        if any(p is not None for p in mask_paths):
            metadata["alpha_mask_filenames"] = mask_paths
        if split == "train":
            CONSOLE.log(
                f"ds4d-data: {len(chosen)} training images over {len({f.frame_index for f in chosen})} frames "
                f"from {path}" + (f", {seed[0].shape[0]} seed points" if seed is not None else ", no seed points")
            )
        return DataparserOutputs(
            image_filenames=[f.image_path for f in chosen],
            cameras=cameras,
            alpha_color=None,
            scene_box=SceneBox(aabb=aabb),
            metadata=metadata,
        )


def rotation_defect(c2w: np.ndarray) -> float:
    """How far the top-left 3x3 block of a camera-to-world matrix is from a rotation: the largest entry of
    ``|R^T R - I|`` or ``|det R - 1|`` (0 for a rotation, 1 for an all-zero matrix, 2 for a mirror)."""
    rotation = np.asarray(c2w, dtype=np.float64)[:3, :3]
    orthonormality = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
    return max(orthonormality, abs(float(np.linalg.det(rotation)) - 1.0))


def dataset_file(root: Path, where: str, key: str, value: Any, allow_outside: bool) -> Path:
    """The file an entry of transforms.json names, refused when it resolves outside ``root``.

    Absolute paths, ``..`` and symlinks all count by where they lead (``Path.resolve``), so an
    absolute path into the folder is fine and a symlink out of it is not.
    """
    file = root / str(value)
    if allow_outside:
        return file
    resolved, folder = file.resolve(), root.resolve()
    if not resolved.is_relative_to(folder):
        raise DatasetError(
            f"{where} {key} {str(value)!r} leads outside the dataset folder {folder} (to {resolved}); move the "
            "file into the folder, or allow it with `ds4d-data --allow-outside-paths True` if you trust this dataset"
        )
    return file


ds4d_dataparser = DataParserSpecification(
    config=Ds4dDataParserConfig(),
    description="ds4d dataset: input, pseudo and eval views of a moving object, with times",
)
