"""Load a trained ds4d run from its ``config.yml`` for the plugin's commands.

``config.yml`` is code: nerfstudio writes it with PyYAML's object tags and reads it back with the
loader that constructs anything, so a crafted file runs commands. Here it is read with
:class:`RunConfigLoader`, which builds only what a nerfstudio/ds4d config holds (nerfstudio and
ds4d_ns classes, their enums, pathlib paths, optimizer classes, tuples and plain YAML) and refuses
every other tag by name. The checkpoint is read with ``torch.load(weights_only=True)``.

Paths in ``config.yml`` are those of the folder training ran in; the run folder is where
``config.yml`` lies, so checkpoints are taken from there, and the dataset is looked for where the
config says, then where it lay relative to the run folder at training time (so a project folder
can be moved or opened from anywhere), then relative to the run folder and the current folder.
``ds4d-render`` and ``ds4d-export`` need only the checkpoint (:func:`load_trained_model`);
``ds4d-viz`` also reads the training images.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, List, Optional, Tuple, Union

import torch
import yaml
from nerfstudio.pipelines.base_pipeline import Pipeline

from ds4d_ns.errors import UserError
from ds4d_ns.io.checkpoints import CheckpointError, check_checkpoint_folder, load_newest_checkpoint

CONFIG_PACKAGES = ("nerfstudio", "ds4d_ns")
"""Packages whose classes a run's config.yml may construct."""
REFERENCED_PACKAGES = CONFIG_PACKAGES + ("torch.optim",)
"""Packages whose classes a config may name (``_target`` fields, optimizer classes) without constructing."""
PATH_TYPES = tuple(f"pathlib.{n}" for n in ("Path", "PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"))
"""Path classes a config may build (nerfstudio writes ``!!python/object/apply:pathlib.PosixPath``)."""


class RunLoadError(UserError):
    """A run folder that cannot be loaded; the message names the file and the reason."""


def _in_packages(name: str, packages: Tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def _refused(node: yaml.Node, why: str) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, f"refusing the tag {node.tag!r}: {why}", node.start_mark)


def _find_class(name: str, node: yaml.Node, packages: Tuple[str, ...]) -> type:
    """The class called ``name`` (module.Class) if it lies in ``packages``, else a YAML error naming the tag."""
    if not _in_packages(name, packages) or "." not in name:
        raise _refused(node, "a ds4d run's config.yml never holds it")
    module_name, _, attribute = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise _refused(node, f"it names nothing installed ({err})") from err
    if not isinstance(found, type):
        raise _refused(node, f"it names a {type(found).__name__}, not a class")
    return found


class RunConfigLoader(yaml.SafeLoader):
    """PyYAML loader for nerfstudio ``config.yml`` files that constructs only config classes.

    ``!!python/object:`` builds a nerfstudio/ds4d_ns class without calling its constructor (its
    fields are then set, as PyYAML does); ``!!python/object/apply:`` calls only pathlib path
    classes and nerfstudio/ds4d_ns enums; ``!!python/name:`` may name nerfstudio/ds4d_ns and
    ``torch.optim`` classes; ``!!python/tuple`` makes a tuple. Any other tag is refused.
    """


def _construct_tuple(loader: RunConfigLoader, node: yaml.Node) -> tuple:
    return tuple(loader.construct_sequence(node, deep=True))


def _construct_name(loader: RunConfigLoader, suffix: str, node: yaml.Node) -> type:
    return _find_class(suffix, node, REFERENCED_PACKAGES)


def _construct_object(loader: RunConfigLoader, suffix: str, node: yaml.Node):
    cls = _find_class(suffix, node, CONFIG_PACKAGES)
    instance = cls.__new__(cls)  # type: ignore[call-overload]  # mypy looks __new__ up on `type`, not on cls
    yield instance  # first, so that aliases to this object inside its own fields resolve
    state = loader.construct_mapping(node, deep=True)
    if not all(isinstance(key, str) and not key.startswith("__") for key in state):
        raise _refused(node, "unexpected field names")
    instance.__dict__.update(state)


def _construct_apply(loader: RunConfigLoader, suffix: str, node: yaml.Node) -> Any:
    import enum

    if suffix in PATH_TYPES:
        cls: type = PurePath if suffix.startswith("pathlib.Pure") else Path
    else:
        cls = _find_class(suffix, node, CONFIG_PACKAGES)
        if not issubclass(cls, enum.Enum):
            raise _refused(node, "only paths and enums are built by calls")
    if not isinstance(node, yaml.SequenceNode):
        raise _refused(node, "expected a list of arguments")
    return cls(*loader.construct_sequence(node, deep=True))


RunConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)
RunConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", _construct_name)
RunConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/object:", _construct_object)
RunConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/object/apply:", _construct_apply)


def read_run_config(config_path: Path):
    """The ``TrainerConfig`` of a ds4d run, read without running anything it might contain.

    Raises:
        RunLoadError: the file is missing, not YAML, holds a tag a config never holds, or is not a
            ds4d run's config.
    """
    from nerfstudio.engine.trainer import TrainerConfig

    from ds4d_ns.ds4d_model import Ds4dModelConfig

    config_path = Path(config_path)
    if not config_path.is_file():
        raise RunLoadError(f"{config_path}: no such config (pass the config.yml of a ds4d run)")
    try:
        config = yaml.load(config_path.read_text(), Loader=RunConfigLoader)
    except (OSError, UnicodeDecodeError, RecursionError) as err:
        raise RunLoadError(f"{config_path}: cannot read it ({type(err).__name__}: {err})") from err
    except yaml.YAMLError as err:
        problem = str(getattr(err, "problem", None) or err)
        raise RunLoadError(f"{config_path}: not loaded: {problem}") from err
    if not isinstance(config, TrainerConfig):
        raise RunLoadError(f"{config_path}: not a nerfstudio run config (got {type(config).__name__})")
    model = getattr(getattr(config, "pipeline", None), "model", None)
    if not isinstance(model, Ds4dModelConfig):
        raise RunLoadError(f"{config_path}: the run is a {type(model).__name__} run, not a ds4d one")
    return config


@dataclass
class RunFolder:
    """Where a run's files are, resolved from its ``config.yml``."""

    config: Any
    """The run's ``TrainerConfig``."""
    config_path: Path
    """Its config.yml."""
    checkpoint_dir: Path
    """The folder of its checkpoints (next to config.yml)."""
    dataset: Optional[Path]
    """Its dataset folder, where it was found; None if it is not where the config says."""
    dataset_given: Path
    """The dataset path as stored in the config."""


def _dataset_candidates(config, run_dir: Path, given: Path) -> List[Path]:
    """Where the dataset may be, most faithful first.

    The dataset's place relative to the run folder at training time (both paths as stored: relative
    to the folder training ran in, or absolute) is kept when the run and its dataset move together.
    """
    trained_run_dir = Path(config.output_dir) / config.experiment_name / config.method_name / str(config.timestamp)
    candidates = [given] if given.is_absolute() else []
    if given.is_absolute() == trained_run_dir.is_absolute():
        candidates.append(run_dir / os.path.relpath(given, trained_run_dir))
    if not given.is_absolute():
        candidates += [run_dir / given, Path.cwd() / given]
    return candidates


def resolve_run(config_path: Path) -> RunFolder:
    """Read ``config_path`` and find the run's checkpoint folder and dataset."""
    config_path = Path(config_path)
    config = read_run_config(config_path)
    run_dir = config_path.parent
    datamanager = config.pipeline.datamanager
    given = Path(datamanager.data if datamanager.data is not None else datamanager.dataparser.data)
    found = next((path for path in _dataset_candidates(config, run_dir, given) if path.is_dir()), None)
    dataset = None if found is None else Path(os.path.normpath(found))
    return RunFolder(config, config_path, run_dir / config.relative_model_dir, dataset, given)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def require_at_least(flag: str, value: Optional[float], minimum: float = 1) -> None:
    """Raise a :class:`UserError` naming ``flag`` unless ``value`` (when given) is at least ``minimum``."""
    if value is not None and value < minimum:
        raise UserError(f"{flag} must be at least {minimum}, got {value}")


def load_trained_model(run: Union[Path, RunFolder]):
    """The model of a finished run built from its checkpoint alone (no dataset needed), in eval mode.

    Args:
        run: the run's config.yml, or the run already resolved by :func:`resolve_run`.

    Returns:
        ``(model, step, run)``.

    Raises:
        RunLoadError, CheckpointError: the config or the checkpoint cannot be used (before loading
            anything large: a missing or empty checkpoint is reported first).
    """
    from nerfstudio.data.scene_box import SceneBox

    from ds4d_ns.features.feature_bank import FEATURE_BANK_KEY, feature_bank_from_state

    run = run if isinstance(run, RunFolder) else resolve_run(run)
    check_checkpoint_folder(run.checkpoint_dir)
    path, state = load_newest_checkpoint(run.checkpoint_dir)
    weights = {key[len("_model.") :]: value for key, value in state["pipeline"].items() if key.startswith("_model.")}
    model_config = run.config.pipeline.model
    try:
        aabb = weights["deformation.hexplane.aabb"].float()
        # the HexPlane's time resolution came from the dataset's frame count; plane 2 is (x, t): [C, t, x]
        model_config.hexplane_time_resolution = int(weights["deformation.hexplane.grids.0.plane_coefs.2"].shape[-2])
    except KeyError as err:
        raise CheckpointError(f"{path}: not a ds4d checkpoint (no {err.args[0]})") from err
    # the frame features' bank (maps, cameras, times) is in the checkpoint: the model is built from it
    bank = feature_bank_from_state(weights, run.config.pipeline.datamanager.frame_features)
    metadata = {} if bank is None else {FEATURE_BANK_KEY: bank}
    model = model_config.setup(scene_box=SceneBox(aabb=aabb), num_train_data=0, metadata=metadata, device=_device())
    model.to(_device())
    model.update_to_step(int(state["step"]))
    model.load_state_dict(weights)
    model.eval()
    return model, int(state["step"]), run


def load_trained_pipeline(config_path: Path) -> Tuple[Pipeline, int]:
    """The pipeline of a finished run (model and dataset), in eval mode, and the step of its checkpoint.

    Raises:
        RunLoadError: the config cannot be used, or the dataset is not found.
        CheckpointError: no checkpoint loads.
    """
    run = resolve_run(config_path)
    if run.dataset is None:
        raise RunLoadError(
            f"{config_path}: the run's dataset {run.dataset_given} is not found (looked where the config says, "
            "where it lay beside the run folder, and relative to the run folder and the current folder); put it "
            "back, or edit data: in config.yml"
        )
    check_checkpoint_folder(run.checkpoint_dir)
    config = run.config
    config.pipeline.datamanager.data = run.dataset
    config.pipeline.datamanager.dataparser.data = run.dataset
    pipeline = config.pipeline.setup(device=_device(), test_mode="inference")
    pipeline.eval()
    path, state = load_newest_checkpoint(run.checkpoint_dir)
    pipeline.load_pipeline(state["pipeline"], int(state["step"]))
    pipeline.model.eval()
    return pipeline, int(state["step"])
