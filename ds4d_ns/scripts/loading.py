"""Load a trained ds4d pipeline from its ``config.yml`` for the plugin's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

from nerfstudio.pipelines.base_pipeline import Pipeline


def load_trained_pipeline(config_path: Path) -> Tuple[Pipeline, int]:
    """The pipeline of a finished run, in eval mode, and the step of its checkpoint.

    Raises:
        FileNotFoundError: ``config_path`` does not exist.
        TypeError: the run is not a ds4d model.
    """
    from nerfstudio.utils.eval_utils import eval_setup

    from ds4d_ns.ds4d_model import Ds4dModel

    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no such config (pass the config.yml of a ds4d run)")
    _, pipeline, _, step = eval_setup(config_path, test_mode="inference")
    if not isinstance(pipeline.model, Ds4dModel):
        raise TypeError(f"{config_path}: the run is a {type(pipeline.model).__name__}, not a ds4d model")
    pipeline.model.eval()
    return pipeline, step
