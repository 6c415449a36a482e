"""The canonical Gaussians before training: where they start, and their first sizes, colours and opacities.

Splatfacto's defaults are kept (scales from the distance to the three nearest neighbours, random
rotations, opacity 0.1, colours from the seed points) with one change for object clips: without
seed points the Gaussians start in a tight ball around the object, not splatfacto's 10-unit cube,
which collapses on sparse object views (``../shared/notes/platform.md``).
"""

from __future__ import annotations

from typing import Tuple

import torch
from jaxtyping import Float
from nerfstudio.models.splatfacto import RGB2SH, num_sh_bases, random_quat_tensor
from torch import Tensor
from torch.nn import Parameter, ParameterDict


def random_ball(count: int, radius: float) -> Tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"]]:
    """``count`` points uniform in a ball of ``radius`` around the origin, with grey-ish colours in [0.3, 0.7]."""
    directions = torch.nn.functional.normalize(torch.randn(count, 3), dim=-1)
    radii = radius * torch.rand(count, 1).pow(1.0 / 3.0)  # the cube root makes the density uniform
    return directions * radii, 0.3 + 0.4 * torch.rand(count, 3)


def initial_gaussians(
    means: Float[Tensor, "n 3"], colours: Float[Tensor, "n 3"], spacing: Float[Tensor, "n 1"], sh_degree: int
) -> ParameterDict:
    """Splatfacto's parameter dict of Gaussians at ``means``.

    Args:
        colours: RGB in [0, 1]: the SH DC term for ``sh_degree`` > 0, else (plain colours) their logits.
        spacing: each point's mean distance to its nearest neighbours: the Gaussians' initial radius.
    """
    count = means.shape[0]
    features_dc = RGB2SH(colours) if sh_degree > 0 else torch.logit(colours, eps=1e-4)
    return ParameterDict(
        {
            "means": Parameter(means),
            "scales": Parameter(torch.log(spacing.clamp_min(1e-4).repeat(1, 3))),
            "quats": Parameter(random_quat_tensor(count)),
            "features_dc": Parameter(features_dc),
            "features_rest": Parameter(torch.zeros(count, num_sh_bases(sh_degree) - 1, 3)),
            "opacities": Parameter(torch.logit(0.1 * torch.ones(count, 1))),
        }
    )
