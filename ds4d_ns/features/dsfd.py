"""Dynamic-static feature decoupling (DSFD, DS4D Sec. 3 and supplement Sec. 1).

For view j, frame i and one patch, with frame feature ``f`` and a reference ``r`` of that view and
patch, the static part is the projection of ``f`` onto ``r`` and the dynamic part is what is left:

    static  = (f . r / |r|^2) r
    dynamic = f - static

The paper builds ``r`` from the middle frame's feature and the mean over frames without saying
how the two are combined; we average them (``"middle+mean"``), and keep each alone as options.
Decoupling has no learned parameters, so it runs once per dataset, not every step.

Everything here is a pure function of tensors shaped ``[T, V, ..., C]``: frames, views, any
number of patch dimensions, channels last.
"""

from __future__ import annotations

from typing import Literal, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

ReferenceMode = Literal["middle+mean", "middle", "mean"]

_EPS = 1e-20


def reference_features(
    features: Float[Tensor, "frames views *patches channels"],
    middle_frame: int,
    mode: ReferenceMode = "middle+mean",
) -> Float[Tensor, "views *patches channels"]:
    """The reference feature of every view and patch: the middle frame's, the mean's, or their average."""
    if not 0 <= middle_frame < features.shape[0]:
        raise ValueError(f"middle_frame {middle_frame} is outside the {features.shape[0]} frames")
    middle = features[middle_frame]
    if mode == "middle":
        return middle
    mean = features.mean(dim=0)
    if mode == "mean":
        return mean
    if mode == "middle+mean":
        return 0.5 * (middle + mean)
    raise ValueError(f"unknown reference mode {mode!r}")


def decouple(
    features: Float[Tensor, "frames views *patches channels"],
    reference: Float[Tensor, "views *patches channels"],
) -> Tuple[Float[Tensor, "frames views *patches channels"], Float[Tensor, "frames views *patches channels"]]:
    """Static part (projection onto the reference) and dynamic part (the orthogonal rest)."""
    if features.shape[1:] != reference.shape:
        raise ValueError(
            f"reference must have the shape of one frame {tuple(features.shape[1:])}, got {tuple(reference.shape)}"
        )
    # clamp, not add: adding an epsilon would leave a small static residue in the dynamic part
    coefficient = (features * reference).sum(dim=-1, keepdim=True) / reference.square().sum(
        dim=-1, keepdim=True
    ).clamp_min(_EPS)
    static = coefficient * reference
    return static, features - static


def decoupled_features(
    features: Float[Tensor, "frames views *patches channels"],
    middle_frame: int,
    mode: ReferenceMode = "middle+mean",
) -> Float[Tensor, "frames views *patches twice_channels"]:
    """DS4D's decoupled feature: the dynamic part concatenated with the frame feature."""
    _, dynamic = decouple(features, reference_features(features, middle_frame, mode))
    return torch.cat([dynamic, features], dim=-1)


def decouple_with_projection_matrices(
    features: Float[Tensor, "frames views *patches channels"],
    reference: Float[Tensor, "views *patches channels"],
) -> Tuple[Float[Tensor, "frames views *patches channels"], Float[Tensor, "frames views *patches channels"]]:
    """Slow reference of :func:`decouple`: builds each patch's ``C x C`` projector ``r r^T / |r|^2``.

    This is the textbook way of projecting onto a direction; it costs ``O(C^2)`` per patch instead
    of ``O(C)``. It serves as the reference in tests and as the "direct" decoupling baseline of
    ``benchmarks/dsfd_timing.py`` (the paper does not define its "direct" variant; this is our stand-in).
    """
    projector = reference[..., :, None] * reference[..., None, :]
    projector = projector / reference.square().sum(dim=-1)[..., None, None].clamp_min(_EPS)
    static = torch.einsum("v...cd,tv...d->tv...c", projector, features)
    return static, features - static
