"""CUDA graphs over the parts of a training step whose tensor shapes stay fixed.

A ds4d step on a GPU is bound by the host, not the GPU: about a thousand small kernels and four
thousand framework operations a step, for some 5 ms of GPU work (``benchmarks/profile_step.py``).
Two parts have shapes that only densification changes, and are replayed here as CUDA graphs (forward
and backward each one launch, through :class:`ds4d_ns.cuda_graphs.GraphedFunction`):

* the frame features of every Gaussian (TSSF: projection into the views, map sampling, fusion), its
  deformation to the step's time and the HexPlane regularisers (its input shapes change when
  densification changes the number of Gaussians: it is then captured again, some fifty times in the
  full recipe);
* the image losses of the step's views (photometric L1 + SSIM and the alpha term; the batch's shape
  never changes, one capture per stage).

The rasteriser is not captured: gsplat sizes its tile lists from the data, reading a count back from
the GPU. Graphs are used in training on a GPU only, with gradients on, when ``--pipeline.model.cuda-graphs``
is True; everything else (CPU runs, evaluation, rendering, the gradient-free first pass of the frame
features) calls the same functions eagerly (same results: ``tests/test_step_graphs.py`` checks losses
and gradients against eager on a GPU).

A replay writes its outputs into the same memory every time: an output is valid until the next
call of the same graph, which in training is the next step, after this step's backward has used it.
The SDS networks are graphed the same way (``ds4d_ns.guidance.zero123``, ``ds4d_ns.guidance.priors``).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from ds4d_ns.cuda_graphs import GraphedFunction, TensorFunction
from ds4d_ns.fields.deformation import DeformationField, DeformedGaussians
from ds4d_ns.fields.tssf import FramePointFeatures, FusionResult
from ds4d_ns.losses.photometric import photometric_loss
from ds4d_ns.options import SamplingPoints

REGULARISER_NAMES: Tuple[str, ...] = ("plane_tv", "time_smoothness", "time_l1")


def gaussian_frame_features(
    features: FramePointFeatures,
    field: DeformationField,
    sampling_points: Optional[SamplingPoints],
    means: Float[Tensor, "n 3"],
    quats: Float[Tensor, "n 4"],
    scales: Float[Tensor, "n 3"],
    time: float | Float[Tensor, ""],
) -> FusionResult:
    """Fused frame features of the Gaussians at ``time`` and each view's weight, sampled where
    ``sampling_points`` says: at the canonical centres, or (``"deformed"``) at the centres deformed to ``time``
    by a first, gradient-free pass fed the canonical centres' features."""
    points = means
    if sampling_points == "deformed":
        with torch.no_grad():
            first_pass = features(points, time).features
            points = field(means, quats, scales, time, first_pass).means
    return features(points, time)


class DeformationStep:
    """A training step's whole use of the deformation field: the frame features of the Gaussians (when the model
    has them), the Gaussians deformed to the step's time, and the HexPlane's regularisers (unweighted), through
    a :class:`GraphedFunction` per feature sampling choice.

    The frame features are inside the graph: with the step's time on the GPU they read nothing back
    (``FramePointFeatures`` finds the frame bracket there), so projecting the Gaussians into every view, sampling
    the maps and fusing them is replayed with the rest.

    Args:
        field: the deformation field.
        enabled: False runs eagerly.
        features: the model's frame point features (TSSF), or None for a model without frame features.
    """

    def __init__(self, field: DeformationField, enabled: bool, features: Optional[FramePointFeatures] = None) -> None:
        self.field, self.features, self.enabled = field, features, enabled
        # the graphs' owner: every parameter the step reads (a plain attribute here, so the model's
        # checkpoint keys are unchanged)
        self.parameters_owner: nn.Module = field if features is None else nn.ModuleList([field, features])
        self._graphs: Dict[Optional[SamplingPoints], GraphedFunction] = {}

    @property
    def captures(self) -> int:
        """CUDA-graph captures so far, over the sampling choices used."""
        return sum(graph.captures for graph in self._graphs.values())

    def _graph(self, sampling_points: Optional[SamplingPoints]) -> GraphedFunction:
        if sampling_points not in self._graphs:
            field, features = self.field, self.features

            def flat(means: Tensor, quats: Tensor, scales: Tensor, time: Tensor) -> Tuple[Tensor, ...]:
                extra = None
                if features is not None:
                    extra = gaussian_frame_features(features, field, sampling_points, means, quats, scales, time)
                deformed = field(means, quats, scales, time, None if extra is None else extra.features)
                regularisers = field.hexplane.regularisers()
                return (deformed.means, deformed.quats, deformed.scales, *(regularisers[n] for n in REGULARISER_NAMES))

            self._graphs[sampling_points] = GraphedFunction(flat, owner=self.parameters_owner, enabled=self.enabled)
        return self._graphs[sampling_points]

    def __call__(
        self,
        means: Float[Tensor, "n 3"],
        quats: Float[Tensor, "n 4"],
        scales: Float[Tensor, "n 3"],
        time: float | Float[Tensor, ""],
        sampling_points: Optional[SamplingPoints] = None,
    ) -> Tuple[DeformedGaussians, Dict[str, Float[Tensor, ""]]]:
        """The Gaussians at ``time`` and the regularisers; ``sampling_points`` is the frame features' (the
        model's ``feature_sampling_points``; unused without features)."""
        if not isinstance(time, Tensor):  # made on the device: a number copied there would wait for the GPU
            time = means.new_full((), float(time))
        outputs = self._graph(sampling_points)(means, quats, scales, time.reshape(()).to(means))
        return DeformedGaussians(*outputs[:3]), dict(zip(REGULARISER_NAMES, outputs[3:]))


class ImageLosses:
    """The photometric and alpha terms of a batch of views, through :class:`GraphedFunction` (one per
    combination of optional inputs present).

    Args:
        ssim_lambda: weight of 1 - SSIM against L1 (splatfacto's ``ssim_lambda``).
        motion_weight: extra weight of the moving region in the L1 term.
        mask_weight: weight of the alpha loss; 0 leaves it out.
        enabled: False runs eagerly.
    """

    def __init__(self, ssim_lambda: float, motion_weight: float, mask_weight: float, enabled: bool) -> None:
        self.ssim_lambda, self.motion_weight, self.mask_weight = ssim_lambda, motion_weight, mask_weight
        self.enabled = enabled
        self._graphs: Dict[Tuple[bool, bool], GraphedFunction] = {}

    @property
    def captures(self) -> int:
        """CUDA-graph captures so far, over the layouts used."""
        return sum(graph.captures for graph in self._graphs.values())

    @classmethod
    def from_model_config(cls, config: Any) -> "ImageLosses":
        """The image losses of a ``Ds4dModelConfig`` (its ``ssim_lambda``, ``motion_loss_weight``,
        ``mask_loss_weight`` and ``cuda_graphs``)."""
        return cls(config.ssim_lambda, config.motion_loss_weight, config.mask_loss_weight, config.cuda_graphs)

    def __call__(
        self,
        pred: Float[Tensor, "views h w 3"],
        target: Float[Tensor, "views h w 3"],
        view_weights: Float[Tensor, " views"],
        alpha: Optional[Float[Tensor, "views h w 1"]] = None,
        target_alpha: Optional[Float[Tensor, "views h w 1"]] = None,
        motion_mask: Optional[Bool[Tensor, "views h w"]] = None,
    ) -> Dict[str, Float[Tensor, ""]]:
        """``{"rgb_loss": ..., "mask_loss": ...}`` (no mask loss without a target alpha or with weight 0)."""
        with_alpha = alpha is not None and target_alpha is not None and self.mask_weight > 0
        with_motion = motion_mask is not None and self.motion_weight != 0.0
        layout = (with_alpha, with_motion)
        if layout not in self._graphs:
            self._graphs[layout] = GraphedFunction(self._function(*layout), enabled=self.enabled)
        args = [pred, target, view_weights]
        if with_alpha:
            assert alpha is not None and target_alpha is not None
            args += [alpha, target_alpha]
        if with_motion:
            assert motion_mask is not None
            args.append(motion_mask)
        outputs = self._graphs[layout](*args)
        return dict(zip(("rgb_loss", "mask_loss") if with_alpha else ("rgb_loss",), outputs))

    def _function(self, with_alpha: bool, with_motion: bool) -> TensorFunction:
        ssim_lambda, motion_weight, mask_weight = self.ssim_lambda, self.motion_weight, self.mask_weight

        def losses(pred: Tensor, target: Tensor, view_weights: Tensor, *rest: Tensor) -> Tuple[Tensor, ...]:
            motion_mask = rest[-1] if with_motion else None
            rgb = photometric_loss(pred, target, view_weights, ssim_lambda, motion_mask, motion_weight)
            if not with_alpha:
                return (rgb,)
            alpha, target_alpha = rest[0], rest[1]
            return rgb, mask_weight * (alpha - target_alpha).square().mean()

        return losses
