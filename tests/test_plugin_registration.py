"""Nerfstudio discovers the plugin through its installed entry points."""

from __future__ import annotations

import subprocess
import sys


def test_method_and_dataparser_are_discovered():
    from nerfstudio.plugins.registry import discover_methods
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    methods, _ = discover_methods()
    assert "ds4d" in methods and "ds4d-cpu" in methods
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
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig
    from nerfstudio.utils.rich_utils import CONSOLE  # noqa: F401  (tyro docstrings need the module source)

    from ds4d_ns.data.datamanager import Ds4dDatamanagerConfig
    from ds4d_ns.ds4d_model import Ds4dModelConfig

    for config in (Ds4dModelConfig, Ds4dDataParserConfig, Ds4dDatamanagerConfig):
        own = [f.name for f in fields(config) if f.name in config.__dict__.get("__annotations__", {})]
        for name in own:
            if name.startswith("_"):
                continue
            assert docstrings.get_field_docstring(config, name, ()), f"{config.__name__}.{name} has no docstring"
