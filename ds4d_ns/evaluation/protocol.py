"""The Consistent4D evaluation protocol as ``ds4d-eval`` applies it: views, images, metrics, sources.

What is scored (every choice below is the published one unless marked *ours*):

* **Views.** Four held-out cameras at azimuths -75, 15, 105 and 195 degrees, elevation 0, radius 2,
  vertical field of view 49.1 degrees, the input camera at azimuth 0 (``ds4d_ns.camera_layouts``; the Consistent4D
  paper, arXiv 2311.02848, and its test set). Views are named ``eval_0`` .. ``eval_3`` as in
  the public scripts' folders (``<object>/eval_<i>/<frame>.png``). Consistent4D scores 32 frames;
  STAG4D scored 30: the number of frames and views actually scored is part of every result (*ours*).
* **Images.** 512 x 512 on a white background: RGBA frames are composited over white, then every
  frame (prediction and ground truth alike) is resized to 512 x 512 with PIL's bicubic filter, as
  ``evaluation/compute_image_level_metrics.py`` of github.com/yanqinJiang/Consistent4D does
  (``Image.resize((512, 512))``). That script's loader has an RGBA option that whitens only the pixels of
  alpha exactly 0 (its callers pass RGB images); here alpha is blended (``rgb * a + 255 * (1 - a)``), the
  same on binary masks and right on soft edges (*ours*).
* **CLIP.** Cosine similarity of the image embeddings of ``openai/clip-vit-base-patch32`` (transformers,
  ``CLIPImageProcessor`` then the projected image embedding, i.e. ``CLIPModel.get_image_features``),
  prediction against ground truth, per frame (the same script).
* **LPIPS.** torchmetrics' LPIPS with the VGG backbone on inputs scaled to [-1, 1], per frame.
* **PSNR, SSIM.** Per frame on the whole image, white background included, on [0, 1] images with a data
  range of 1 (the script passes 0..255 floats and lets torchmetrics infer the range from the data,
  which is 255 for any frame holding both white and a dark pixel). SSIM: torchmetrics' Gaussian window
  (11 px, sigma 1.5).
* **Averaging.** Per-frame values are averaged over the frames of a view, then over views (then, by the
  user, over objects), as the script does.
* **Moving-region PSNR** (*ours*; the protocol has none, and on objects whose moving part is small the
  whole-image metrics hardly see motion): PSNR over the pixels whose ground truth changes over the clip
  (a channel leaves the pixel's temporal median by more than ``--moving-threshold`` in some frame, the
  region grown by two pixels: ``ds4d_ns.evaluation.motion_region``, the training log's definition), per view.
* **FVD** (*ours as a definition*): the Fréchet distance between the I3D features of the predicted and
  the true clip sets. A clip is a window of 16 consecutive frames of one view video, taken at a fixed
  stride (``--fvd-stride``, 4 by default) over every view; the distribution is over all clips of all
  views. Features: the 400-class Kinetics I3D (``i3d_pretrained_400.pt``, as the Consistent4D script and
  the ``cd-fvd`` package load it) on frames resized to 224 x 224 (bicubic) and scaled to [-1, 1], its
  time-averaged logits (400 numbers per clip). The network is ``cd-fvd``'s PyTorch I3D
  (github.com/songweige/content-debiased-fvd), and so is the Fréchet distance (computed in float64).
  cd-fvd defines FVD over a set of videos, one feature row per video; here each 16-frame window is one
  such video. The public script ``evaluation/compute_fvd.py`` instead feeds each whole view video as one
  clip, so it gets one feature row per view and per object, and estimates a covariance from that single
  row: NaN, then a matrix square root that fails. Numbers from it (and papers' FVD on this benchmark)
  are therefore not comparable with these. An FVD from n clips is a small-sample estimate (n is far
  below the 400 feature dimensions) and grows as n shrinks: compare FVDs only at the same frame count
  and stride (the clip count is reported).
* **FID-VID** (STAG4D's authors' description): for each frame index, the FID between the predicted
  and the true images of that frame over the views (torchmetrics ``FrechetInceptionDistance``, 2048-d
  Inception pool features), averaged over frames.

A metric whose pretrained weights cannot be loaded is reported as unavailable, with the reason and
the flag that supplies them; it is never computed with random weights.
"""

from __future__ import annotations

from typing import Dict, Literal, Tuple, get_args

import numpy as np
from jaxtyping import UInt8

from ds4d_ns import camera_layouts
from ds4d_ns.evaluation.motion_region import MOTION_THRESHOLD

PROTOCOL_RESOLUTION = 512
"""Side of the square frames every metric sees (Consistent4D's ground truth and scripts)."""
CLIP_MODEL_ID = "openai/clip-vit-base-patch32"
"""The CLIP of the protocol (Consistent4D's ``compute_image_level_metrics.py``)."""
EVAL_AZIMUTHS_DEG: Tuple[float, ...] = camera_layouts.CONSISTENT4D_EVAL_AZIMUTHS_DEG
"""Azimuths of the evaluation views, in the order of their names."""
FVD_CLIP_LENGTH = 16
"""Frames per I3D clip: the length I3D FVD is defined on (Unterthiner et al. 2018; cd-fvd's default)."""

FVD_DEFAULT_STRIDE = 4
"""Frames between the starts of consecutive clips of a view (32 frames give 5 clips per view)."""
I3D_INPUT_SIZE = 224
"""Side the frames are resized to for I3D (the public script and cd-fvd)."""
DEFAULT_MOVING_THRESHOLD = MOTION_THRESHOLD
"""A pixel is moving when one of its channels leaves its temporal median by more than this (in [0, 1]);
the training log's threshold, so both report the same region."""
MetricName = Literal["psnr", "ssim", "lpips", "clip", "psnr_moving", "fvd", "fid_vid"]
"""A metric ``ds4d-eval`` reports."""
METRICS: Tuple[MetricName, ...] = get_args(MetricName)
"""Every metric ``ds4d-eval`` reports, in report order."""
HIGHER_IS_BETTER: Dict[MetricName, bool] = {
    "psnr": True,
    "ssim": True,
    "lpips": False,
    "clip": True,
    "psnr_moving": True,
    "fvd": False,
    "fid_vid": False,
}
"""Whether a higher value of each metric means a better result."""


def view_name(index: int) -> str:
    """Name of evaluation view ``index`` (``eval_0`` ..), as the public scripts name their folders."""
    return f"eval_{index}"


def default_view_names() -> Tuple[str, ...]:
    """``eval_0`` .. ``eval_3``: the protocol's four views."""
    return tuple(view_name(i) for i in range(len(EVAL_AZIMUTHS_DEG)))


def composite_on_white(image: UInt8[np.ndarray, "*b h w c"]) -> UInt8[np.ndarray, "*b h w 3"]:
    """RGB of uint8 RGB or RGBA images, RGBA blended over white (``rgb * a + 255 * (1 - a)``)."""
    if image.shape[-1] == 3:
        return image
    if image.shape[-1] != 4:
        raise ValueError(f"expected RGB or RGBA images, got {image.shape[-1]} channels")
    alpha = image[..., 3:4].astype(np.float32) / 255.0
    blended = image[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.rint(blended).clip(0, 255).astype(np.uint8)


def resize_frames(frames: UInt8[np.ndarray, "t h w 3"], size: int) -> UInt8[np.ndarray, "t s s 3"]:
    """Frames resized to ``size`` x ``size`` with PIL's bicubic filter (unchanged if already that size)."""
    from PIL import Image

    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack(
        [np.asarray(Image.fromarray(frame).resize((size, size), resample=Image.Resampling.BICUBIC)) for frame in frames]
    )


def to_protocol_frames(
    frames: UInt8[np.ndarray, "t h w c"], size: int = PROTOCOL_RESOLUTION
) -> UInt8[np.ndarray, "t s s 3"]:
    """Frames as every metric sees them: composited on white, resized to ``size`` x ``size``."""
    return resize_frames(composite_on_white(frames), size)
