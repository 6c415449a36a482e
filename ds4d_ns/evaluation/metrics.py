"""Per-frame image metrics of the protocol (``ds4d_ns.evaluation.protocol``) and FID-VID.

Pure functions (PSNR, moving-region PSNR, SSIM) take float images in [0, 1], channels last. The
metrics with pretrained networks are small classes built by a ``load`` class method, which raises
:class:`MetricUnavailable` (naming the weights and the flag that supplies them) instead of ever
building the network with random weights; tests build the same classes around tiny networks.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional, Union

import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from torch import Tensor, nn

from ds4d_ns.errors import UserError, WeightsUnavailable
from ds4d_ns.evaluation.protocol import CLIP_MODEL_ID

if TYPE_CHECKING:  # annotations only: the loaders import these packages when called
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    from transformers import CLIPImageProcessor, CLIPModel

VGG16_CHECKPOINT = "vgg16-397923af.pth"
"""File name of torchvision's ImageNet VGG16 weights, which LPIPS (VGG) loads."""
INCEPTION_CHECKPOINT = "weights-inception-2015-12-05-6726825d.pth"
"""File name of torch-fidelity's FID Inception weights, which torchmetrics' FID loads."""


class MetricUnavailable(WeightsUnavailable):
    """A metric cannot be computed here (its weights cannot be loaded); the message says why and how."""


def first_line(err: BaseException) -> str:
    """``Type: first line of the message``, for reasons in reports."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def to_unit(frames: UInt8[np.ndarray, "t h w 3"], device: Union[str, torch.device] = "cpu") -> Float[Tensor, "t h w 3"]:
    """uint8 frames as float32 in [0, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).float() / 255.0


# ------------------------------------------------------------------------------------- pure metrics
def psnr(prediction: Float[Tensor, "t h w 3"], target: Float[Tensor, "t h w 3"]) -> Float[Tensor, " t"]:
    """PSNR per frame (dB) of images in [0, 1] (data range 1); identical frames give infinity."""
    mse = (prediction.double() - target.double()).square().flatten(1).mean(1)
    return (10.0 * torch.log10(1.0 / mse)).float()


def moving_mask(target: Float[Tensor, "t h w 3"], threshold: float) -> Bool[Tensor, "h w"]:
    """Pixels whose ground truth changes over the clip: the moving region the training log uses too
    (``ds4d_ns.evaluation.motion_region.moving_region``: some channel leaves the pixel's temporal
    median by more than ``threshold`` in some frame, grown by a few pixels)."""
    from ds4d_ns.evaluation.motion_region import moving_region

    return moving_region(target.float(), threshold=threshold)


def masked_psnr(
    prediction: Float[Tensor, "t h w 3"], target: Float[Tensor, "t h w 3"], mask: Bool[Tensor, "h w"]
) -> Float[Tensor, " t"]:
    """PSNR per frame over the pixels of ``mask`` only (NaN when the mask is empty)."""
    if not bool(mask.any()):
        return torch.full((prediction.shape[0],), float("nan"))
    diff = prediction[:, mask].double() - target[:, mask].double()
    return (10.0 * torch.log10(1.0 / diff.square().mean(dim=(1, 2)))).float()


def ssim(prediction: Float[Tensor, "t h w 3"], target: Float[Tensor, "t h w 3"]) -> Float[Tensor, " t"]:
    """SSIM per frame (torchmetrics, Gaussian window 11 px, sigma 1.5, data range 1)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    values = structural_similarity_index_measure(
        prediction.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), data_range=1.0, reduction="none"
    )
    assert isinstance(values, Tensor)  # a tuple only with return_full_image or return_contrast_sensitivity
    return values.view(-1).float()


# ------------------------------------------------------------------------------------- LPIPS (VGG)
def check_state_dict(path: Path, flag: str, what: str) -> None:
    """Refuse a weights file that is missing or holds anything but tensors (``torch.load(weights_only=True)``).

    Libraries that load these files themselves (torch-fidelity with ``weights_only=False``, cd-fvd with
    torch's default, which is that too before torch 2.6) are only given files that passed this check, so a
    crafted pickle never runs.
    """
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file ({what})")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- any failure means this is not a plain weights file
        raise UserError(f"{flag} {path}: not a PyTorch weights file ({what}): {first_line(err)}") from err


@contextmanager
def _torch_hub_holding(checkpoint: Path, name: str) -> Iterator[None]:
    """torch's hub folder pointed, for the block, at a temporary one holding ``checkpoint`` as ``name``.

    torchvision loads pretrained weights from ``<hub>/checkpoints/<name>`` when the file is there, so
    this is how a weights file given on the command line reaches a library that only downloads.
    """
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="ds4d-eval-hub-") as hub:
        (Path(hub) / "checkpoints").mkdir()
        os.symlink(Path(checkpoint).resolve(), Path(hub) / "checkpoints" / name)
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


class LpipsVgg:
    """LPIPS with torchmetrics' VGG network on inputs in [-1, 1], one value per frame."""

    def __init__(self, metric: LearnedPerceptualImagePatchSimilarity) -> None:
        self.metric = metric
        """torchmetrics' LPIPS, VGG network."""

    @classmethod
    def load(cls, vgg16: Optional[Path] = None, device: Union[str, torch.device] = "cpu") -> "LpipsVgg":
        """torchmetrics' LPIPS (VGG); the VGG16 ImageNet weights from ``vgg16`` or torch's cache / download.

        Raises:
            MetricUnavailable: the weights are neither given, cached nor downloadable.
            UserError: ``vgg16`` is not a weights file.
        """
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        def build() -> LearnedPerceptualImagePatchSimilarity:
            return LearnedPerceptualImagePatchSimilarity(net_type="vgg", reduction="mean", normalize=False)

        if vgg16 is not None:
            check_state_dict(Path(vgg16), "--vgg16", f"torchvision's ImageNet VGG16 weights, {VGG16_CHECKPOINT}")
            try:
                with _torch_hub_holding(Path(vgg16), VGG16_CHECKPOINT):
                    metric = build()
            except (RuntimeError, KeyError) as err:
                raise UserError(f"--vgg16 {vgg16}: not torchvision's VGG16 weights ({first_line(err)})") from err
        else:
            try:
                metric = build()
            except (OSError, RuntimeError) as err:  # URLError is an OSError; a damaged cache a RuntimeError
                raise MetricUnavailable(
                    f"LPIPS needs torchvision's ImageNet VGG16 weights ({VGG16_CHECKPOINT}), which are not in torch's "
                    f"cache ({torch.hub.get_dir()}/checkpoints) and could not be downloaded ({first_line(err)}); "
                    f"pass them with --vgg16 PATH"
                ) from err
        return cls(metric.to(device).eval())

    @torch.no_grad()
    def __call__(self, prediction: Float[Tensor, "t h w 3"], target: Float[Tensor, "t h w 3"]) -> Float[Tensor, " t"]:
        device = next(self.metric.parameters()).device
        values = []
        # one frame per call: torchmetrics' LPIPS averages over its batch, and the protocol wants each frame
        for frame in range(prediction.shape[0]):
            pred = prediction[frame : frame + 1].permute(0, 3, 1, 2).to(device) * 2.0 - 1.0
            true = target[frame : frame + 1].permute(0, 3, 1, 2).to(device) * 2.0 - 1.0
            values.append(self.metric(pred, true).float().cpu())
        self.metric.reset()
        return torch.stack(values).view(-1)


# ------------------------------------------------------------------------------------------- CLIP
class ClipSimilarity:
    """Cosine similarity of CLIP image embeddings, prediction against ground truth, per frame."""

    def __init__(self, model: CLIPModel, processor: CLIPImageProcessor, batch_size: int = 16) -> None:
        self.model = model
        """The class the Consistent4D script uses."""
        self.processor = processor
        """The model's ``CLIPImageProcessor``."""
        self.batch_size = batch_size

    @classmethod
    def load(cls, model_id: str = CLIP_MODEL_ID, device: Union[str, torch.device] = "cpu") -> "ClipSimilarity":
        """The CLIP image tower of ``model_id`` (a hub id or a local folder) and its image processor.

        A hub model is taken from the Hugging Face cache, else downloaded only if the hub answers.

        Raises:
            MetricUnavailable: the model is neither a folder, cached, nor downloadable.
        """
        from transformers import CLIPImageProcessor, CLIPModel

        def from_pretrained(source: str, local_only: bool):
            model = CLIPModel.from_pretrained(source, local_files_only=local_only)
            processor = CLIPImageProcessor.from_pretrained(source, local_files_only=local_only)
            return model, processor

        way_out = (
            f"pass --clip-model with a local copy of '{CLIP_MODEL_ID}' (a folder with config.json, the weights and "
            "preprocessor_config.json), or download it once where the hub can be reached "
            f"(`huggingface-cli download {CLIP_MODEL_ID}`)"
        )
        folder = Path(model_id).expanduser()
        try:
            if folder.is_dir():
                model, processor = from_pretrained(str(folder), True)
            else:
                try:
                    model, processor = from_pretrained(model_id, True)
                except OSError:
                    from ds4d_ns.process.zero123plus import hub_unreachable_reason

                    unreachable = hub_unreachable_reason()
                    if unreachable is not None:
                        raise MetricUnavailable(
                            f"CLIP needs '{model_id}', which is not in the Hugging Face cache, and {unreachable}; "
                            f"{way_out}"
                        ) from None
                    model, processor = from_pretrained(model_id, False)
        except MetricUnavailable:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise MetricUnavailable(f"CLIP '{model_id}' could not be loaded ({first_line(err)}); {way_out}") from err
        return cls(model.to(device).eval(), processor)

    @torch.no_grad()
    def embed(self, frames: UInt8[np.ndarray, "t h w 3"]) -> Float[Tensor, "t d"]:
        """Projected CLIP image embeddings of uint8 frames (the processor resizes and normalises them)."""
        device = next(self.model.parameters()).device
        embeddings: List[Tensor] = []
        for start in range(0, len(frames), self.batch_size):
            batch = list(frames[start : start + self.batch_size])
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(device)
            output = self.model.get_image_features(pixel_values=pixels)
            # transformers 5 returns a model output whose pooler_output is the projection; 4.x the tensor itself
            embedding = output if isinstance(output, Tensor) else output.pooler_output
            embeddings.append(embedding.float().cpu())
        return torch.cat(embeddings)

    def __call__(
        self, prediction: UInt8[np.ndarray, "t h w 3"], target: UInt8[np.ndarray, "t h w 3"]
    ) -> Float[Tensor, " t"]:
        return torch.nn.functional.cosine_similarity(self.embed(prediction), self.embed(target), dim=-1)


# ---------------------------------------------------------------------------------------- FID-VID
class FidVid:
    """FID-VID: for each frame index, the FID between predicted and true images of that frame over the
    views (torchmetrics ``FrechetInceptionDistance``), then the mean over frames."""

    def __init__(self, metric: FrechetInceptionDistance) -> None:
        self.metric = metric
        """torchmetrics' FID (its network takes uint8 ``[B, 3, H, W]``)."""

    @classmethod
    def load(
        cls,
        inception: Optional[Path] = None,
        device: Union[str, torch.device] = "cpu",
        feature: Optional[nn.Module] = None,
    ) -> "FidVid":
        """torchmetrics' FID on 2048-d Inception features, weights from ``inception`` or torch's cache /
        download; or, with ``feature``, on that network's features (tests, other backbones).

        Raises:
            MetricUnavailable: the Inception weights are neither given, cached nor downloadable.
            UserError: ``inception`` is not a weights file of that network.
        """
        from torchmetrics.image.fid import FrechetInceptionDistance

        if feature is not None:
            return cls(FrechetInceptionDistance(feature=feature).to(device))
        if inception is not None:
            check_state_dict(Path(inception), "--inception", f"torch-fidelity's FID Inception, {INCEPTION_CHECKPOINT}")
            try:
                metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(inception))
            except (RuntimeError, KeyError) as err:
                raise UserError(
                    f"--inception {inception}: not the FID Inception's weights ({first_line(err)})"
                ) from err
        else:
            try:
                metric = FrechetInceptionDistance(feature=2048)
            except (OSError, RuntimeError) as err:
                raise MetricUnavailable(
                    f"FID-VID needs the FID Inception weights ({INCEPTION_CHECKPOINT}, torch-fidelity's), which are "
                    f"not in torch's cache ({torch.hub.get_dir()}/checkpoints) and could not be downloaded "
                    f"({first_line(err)}); pass them with --inception PATH"
                ) from err
        return cls(metric.to(device))

    @torch.no_grad()
    def per_frame(
        self, prediction: UInt8[np.ndarray, "v t h w 3"], target: UInt8[np.ndarray, "v t h w 3"], advance=None
    ) -> Float[Tensor, " t"]:
        """The FID of each frame index over the views (needs at least two views); ``advance(1)`` per frame."""
        if prediction.shape[0] < 2:
            raise ValueError(
                f"FID-VID compares sets of views of one frame: needs at least 2 views, got {prediction.shape[0]}"
            )
        device = self.metric.device
        values = []
        for frame in range(prediction.shape[1]):
            self.metric.reset()
            for images, real in ((target[:, frame], True), (prediction[:, frame], False)):
                self.metric.update(
                    torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(device), real=real
                )
            values.append(float(self.metric.compute()))
            if advance is not None:
                advance(1)
        self.metric.reset()
        return torch.tensor(values)
