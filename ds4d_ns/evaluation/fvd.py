"""FVD over 16-frame clips of every view (definition and sources: ``ds4d_ns.evaluation.protocol``).

Each view video is cut into windows of ``FVD_CLIP_LENGTH`` consecutive frames starting every
``stride`` frames; a clip feature extractor (the 400-class I3D of the ``cd-fvd`` package, loaded from
``--i3d``) maps each window to one feature row, and the FVD is the Fréchet distance between the rows of
the predicted clips and those of the true clips. Any module with the :class:`ClipFeatureExtractor`
call signature can stand in for I3D (tests use small ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Protocol, Tuple, Union

import numpy as np
import torch
from jaxtyping import Float, UInt8
from torch import Tensor

from ds4d_ns.errors import UserError
from ds4d_ns.evaluation.metrics import MetricUnavailable, check_state_dict, first_line
from ds4d_ns.evaluation.protocol import FVD_CLIP_LENGTH, I3D_INPUT_SIZE

I3D_CHECKPOINT = "i3d_pretrained_400.pt"
"""File name of the 400-class Kinetics I3D weights (state dict) that the Consistent4D script and cd-fvd load."""


class ClipFeatureExtractor(Protocol):
    """Maps clips ``[N, 3, L, S, S]`` in [-1, 1] to one feature row each ``[N, D]``."""

    def __call__(self, clips: Float[Tensor, "n 3 l s s"]) -> Float[Tensor, "n d"]: ...


def clip_starts(num_frames: int, length: int = FVD_CLIP_LENGTH, stride: int = 4) -> List[int]:
    """First frames of the windows of ``length`` frames every ``stride`` frames (none if the video is shorter)."""
    if length < 1 or stride < 1:
        raise ValueError(f"clip length and stride must be positive, got {length} and {stride}")
    return list(range(0, num_frames - length + 1, stride))


def view_clips(
    frames: UInt8[np.ndarray, "t h w 3"], length: int = FVD_CLIP_LENGTH, stride: int = 4
) -> UInt8[np.ndarray, "n l h w 3"]:
    """The overlapping windows of one view video."""
    starts = clip_starts(len(frames), length, stride)
    if not starts:
        return np.zeros((0, length) + frames.shape[1:], dtype=frames.dtype)
    return np.stack([frames[start : start + length] for start in starts])


def extractor_input(clips: UInt8[np.ndarray, "n l h w 3"], size: int = I3D_INPUT_SIZE) -> Float[Tensor, "n 3 l s s"]:
    """Clips as I3D takes them: frames resized to ``size`` (bicubic, antialiased, as PIL's bicubic that the
    Consistent4D script uses), scaled from [0, 255] to [-1, 1], channels first then time."""
    n, length, height, width, _ = clips.shape
    frames = (
        torch.from_numpy(np.ascontiguousarray(clips)).float().reshape(n * length, height, width, 3).permute(0, 3, 1, 2)
    )
    if (height, width) != (size, size):
        frames = torch.nn.functional.interpolate(frames, size=(size, size), mode="bicubic", antialias=True)
        frames = frames.clamp(0.0, 255.0)  # bicubic overshoots at edges
    frames = frames / 127.5 - 1.0
    return frames.reshape(n, length, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()


def default_i3d_path() -> Optional[Path]:
    """cd-fvd's own copy of the I3D weights (where its ``load_i3d_model`` downloads them), if present."""
    try:
        import cdfvd.third_party.i3d as package
    except ImportError:
        return None
    path = Path(package.__file__).parent / I3D_CHECKPOINT
    return path if path.is_file() else None


def load_i3d(path: Optional[Path], device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """cd-fvd's PyTorch I3D (400 classes) with the weights of ``path``; its output is the time-averaged logits.

    Raises:
        MetricUnavailable: no weights given and none in cd-fvd's folder (no package registry has them).
        UserError: ``path`` is missing or not that network's state dict.
    """
    path = Path(path) if path is not None else default_i3d_path()
    if path is None:
        raise MetricUnavailable(
            f"FVD needs the 400-class I3D weights ({I3D_CHECKPOINT}, a PyTorch state dict; no package registry "
            "has them: the Consistent4D and cd-fvd repositories link them); pass them with --i3d PATH"
        )
    check_state_dict(path, "--i3d", f"the 400-class I3D weights, {I3D_CHECKPOINT}")
    from cdfvd.third_party.i3d.utils import load_i3d_model

    try:
        return load_i3d_model(torch.device(device), str(path)).eval()
    except Exception as err:  # noqa: BLE001 -- unpickling and load_state_dict fail in many types on a wrong file
        raise UserError(f"--i3d {path}: not the 400-class I3D state dict {I3D_CHECKPOINT} ({first_line(err)})") from err


@torch.no_grad()
def clip_features(
    extractor: ClipFeatureExtractor,
    videos: UInt8[np.ndarray, "v t h w 3"],
    stride: int,
    length: int = FVD_CLIP_LENGTH,
    size: int = I3D_INPUT_SIZE,
    batch_size: int = 4,
    device: Union[str, torch.device] = "cpu",
    advance=None,
) -> Float[Tensor, "n d"]:
    """Feature rows of every window of every view (float64). ``advance(k)`` is told of each k clips done."""
    rows = []
    for video in videos:
        clips = view_clips(video, length, stride)
        for start in range(0, len(clips), batch_size):
            batch = extractor_input(clips[start : start + batch_size], size).to(device)
            rows.append(extractor(batch).double().cpu().reshape(len(batch), -1))
            if advance is not None:
                advance(len(batch))
    if not rows:
        return torch.zeros((0, 0), dtype=torch.float64)
    return torch.cat(rows)


def frechet_distance(a: Float[Tensor, "n d"], b: Float[Tensor, "m d"]) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature rows (cd-fvd's implementation, float64).

    Raises:
        ValueError: a set has fewer than two rows (no covariance can be estimated from one).
    """
    from cdfvd.third_party.i3d.utils import frechet_distance as cdfvd_frechet_distance

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 feature rows per set, got {len(a)} and {len(b)}")
    return float(cdfvd_frechet_distance(a.double(), b.double()))


def fvd(
    extractor: ClipFeatureExtractor,
    prediction: UInt8[np.ndarray, "v t h w 3"],
    target: UInt8[np.ndarray, "v t h w 3"],
    stride: int,
    size: int = I3D_INPUT_SIZE,
    batch_size: int = 4,
    device: Union[str, torch.device] = "cpu",
    advance=None,
) -> Tuple[float, int]:
    """FVD between predicted and true view videos, and the number of clips per set.

    Raises:
        ValueError: fewer than two clips per set (views shorter than 16 frames, or one view of fewer than
            16 + stride frames).
    """
    clips = prediction.shape[0] * len(clip_starts(prediction.shape[1], FVD_CLIP_LENGTH, stride))
    if clips < 2:
        raise ValueError(
            f"FVD needs at least 2 clips of {FVD_CLIP_LENGTH} frames per set; {prediction.shape[0]} view(s) of "
            f"{prediction.shape[1]} frames at stride {stride} give {clips}"
        )
    features = [
        clip_features(extractor, videos, stride, FVD_CLIP_LENGTH, size, batch_size, device, advance)
        for videos in (prediction, target)
    ]
    return frechet_distance(features[0], features[1]), len(features[0])
