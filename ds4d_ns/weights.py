"""``python -m ds4d_ns.weights METHOD``: can this machine get every pretrained model METHOD needs?

Tries to load (and so download into the usual caches) the DINOv2 backbone of the frame features,
the VGG16 weights of the LPIPS loss and the Zero123 model of SDS, as far as the method uses them.
Prints what is missing with the switch that turns it off, and exits 1 if anything is; 0 otherwise.
The demo uses it to fall back to ``ds4d-base``, which needs no pretrained weights.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List


def missing_weights(model_config) -> List[str]:
    """Messages, one per pretrained model the configuration needs and cannot load."""
    problems: List[str] = []
    if model_config.frame_features != "none":
        from ds4d_ns.features.backbone import FeatureBackboneUnavailable, load_backbone

        try:
            load_backbone(model_config.feature_extractor, "cpu")
        except FeatureBackboneUnavailable as err:
            problems.append(str(err))
    if model_config.lpips_loss_weight > 0:
        from ds4d_ns.losses.perceptual import PerceptualWeightsUnavailable, build_lpips_vgg

        try:
            build_lpips_vgg(model_config.lpips_backbone)
        except PerceptualWeightsUnavailable as err:
            problems.append(str(err))
    if model_config.sds_weight > 0 and model_config.sds.weights == "pretrained":
        model_id = model_config.sds.model_id
        if not Path(model_id).is_dir():
            try:
                from huggingface_hub import snapshot_download

                snapshot_download(model_id)
            except Exception as err:  # any hub, network or disk failure means "not available"
                problems.append(
                    f"SDS needs the Zero123 model '{model_id}', which could not be downloaded "
                    f"({type(err).__name__}); turn SDS off with --pipeline.model.sds-weight 0."
                )
    return problems


def main() -> None:
    from nerfstudio.utils.rich_utils import CONSOLE

    from ds4d_ns.method_configs import ds4d_config

    methods = {
        spec.config.method_name: spec.config
        for spec in vars(ds4d_config).values()
        if hasattr(spec, "config") and hasattr(spec.config, "method_name")
    }
    if len(sys.argv) != 2 or sys.argv[1] not in methods:
        CONSOLE.print(f"usage: python -m ds4d_ns.weights METHOD, METHOD one of {sorted(methods)}")
        sys.exit(2)
    problems = missing_weights(methods[sys.argv[1]].pipeline.model)
    for problem in problems:
        CONSOLE.print(f"[yellow]{problem}")
    if problems:
        sys.exit(1)
    CONSOLE.print(f"{sys.argv[1]}: every pretrained model it needs is available")


if __name__ == "__main__":
    main()
