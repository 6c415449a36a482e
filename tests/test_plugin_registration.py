"""Nerfstudio discovers the plugin through its installed entry points."""

from __future__ import annotations

import re
import subprocess
import sys


def test_method_and_dataparser_are_discovered():
    from nerfstudio.plugins.registry import discover_methods
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    methods, _ = discover_methods()
    assert {"ds4d", "ds4d-ga", "ds4d-base", "ds4d-cpu", "ds4d-base-cpu"} <= set(methods)
    models = {name: methods[name].pipeline.model for name in ("ds4d", "ds4d-ga", "ds4d-base", "ds4d-cpu")}
    features = {name: methods[name].pipeline.datamanager.frame_features for name in models}
    assert (features["ds4d"].mode, features["ds4d"].fusion) == ("dsfd", "da")
    assert (features["ds4d-ga"].mode, features["ds4d-ga"].fusion) == ("dsfd", "ga")
    assert features["ds4d-base"].mode == "none" and not features["ds4d-base"].enabled
    assert features["ds4d-cpu"].mode == "dsfd"
    assert features["ds4d"].extractor.weights == "pretrained"  # random weights are never a default
    assert (models["ds4d"].lpips_loss_weight, models["ds4d"].sds.weight) == (1.0, 1.0)
    assert (models["ds4d-ga"].lpips_loss_weight, models["ds4d-ga"].sds.weight) == (1.0, 1.0)
    assert (models["ds4d-cpu"].lpips_loss_weight, models["ds4d-cpu"].sds.weight) == (1.0, 0.0)
    assert (models["ds4d-base"].lpips_loss_weight, models["ds4d-base"].sds.weight) == (0.0, 0.0)
    assert models["ds4d"].sds.weights == "pretrained" and models["ds4d"].lpips_backbone == "pretrained"
    dataparsers, _ = discover_dataparsers()
    assert "ds4d-data" in dataparsers
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParser, Ds4dDataParserConfig

    assert isinstance(dataparsers["ds4d-data"], Ds4dDataParserConfig)
    assert Ds4dDataParser.includes_time


def test_entry_point_modules_import_without_heavy_libraries():
    """Nerfstudio imports every plugin on every ns-train: ours must not pull diffusers or transformers."""
    code = (
        "import sys; import ds4d_ns.method_configs.ds4d_config, ds4d_ns.dataparsers.ds4d_dataparser; "
        "heavy = [m for m in ('diffusers', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_configs_have_help_for_every_field():
    from dataclasses import fields

    import tyro._docstrings as docstrings
    from nerfstudio.utils.rich_utils import CONSOLE  # noqa: F401  (tyro docstrings need the module source)

    from ds4d_ns.data.datamanager import Ds4dDatamanagerConfig
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig
    from ds4d_ns.ds4d_model import Ds4dModelConfig
    from ds4d_ns.features.backbone import FrameFeatureExtractorConfig
    from ds4d_ns.features.feature_bank import FrameFeaturesConfig
    from ds4d_ns.guidance.priors import SdsConfig
    from ds4d_ns.pipeline import Ds4dPipelineConfig
    from ds4d_ns.process.run import ProcessConfig
    from ds4d_ns.process.zero123plus import Zero123PlusConfig

    configs = (Ds4dModelConfig, Ds4dDataParserConfig, Ds4dDatamanagerConfig, FrameFeatureExtractorConfig)
    for config in configs + (FrameFeaturesConfig, SdsConfig, Ds4dPipelineConfig, ProcessConfig, Zero123PlusConfig):
        own = [f.name for f in fields(config) if f.name in config.__dict__.get("__annotations__", {})]
        for name in own:
            if name.startswith("_"):
                continue
            assert docstrings.get_field_docstring(config, name, ()), f"{config.__name__}.{name} has no docstring"


def test_the_weights_check_runs_as_a_command():
    """``python -m ds4d_ns.scripts.weights METHOD`` (the demo's check): a method needing no weights passes."""
    done = subprocess.run(
        [sys.executable, "-m", "ds4d_ns.scripts.weights", "ds4d-base-cpu"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every pretrained model it needs is available" in done.stdout
    unknown = subprocess.run([sys.executable, "-m", "ds4d_ns.scripts.weights", "nope"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "usage" in unknown.stdout


def test_the_library_does_not_import_the_method_configs():
    """Configs sit on top: only commands (ds4d_ns.scripts) may import ds4d_ns.method_configs."""
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "ds4d_ns"
    library = [path for path in package.rglob("*.py") if "scripts" not in path.relative_to(package).parts]
    pattern = re.compile(r"^\s*(from|import) ds4d_ns\.method_configs", re.MULTILINE)
    upward = [str(path.relative_to(package)) for path in library if pattern.search(path.read_text())]
    assert not upward, f"library modules importing the method configs: {upward}"
