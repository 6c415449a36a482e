"""What ``ns-train`` settles for a ds4d run before it writes ``config.yml``: device, name, data path.

Nerfstudio's ``ns-train`` saves the configuration and then builds the trainer on
``machine.device_type`` as given. For a ds4d method:

- **Device.** A configuration asking for CUDA on a machine without it runs on the CPU instead
  (the model's rasteriser falls back to pure torch by itself), said in one line, rather than
  stopping with "Found no NVIDIA driver".
- **Name.** Runs are filed under the dataset folder's name (``outputs/windmill/ds4d/...``) as
  nerfstudio's own methods are when given ``--data``; the ds4d dataparser's ``--data`` (after the
  method, ``ds4d-data --data ...``) would otherwise leave them in ``outputs/unnamed``.
- **Data path.** Stored absolute, so ``ns-eval``, ``ds4d-render`` and ``ds4d-export`` find the
  dataset from any folder.

:func:`prepare_run` is called by ``Ds4dTrainerConfig.save_config``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from rich.markup import escape

CPU_FALLBACK_NOTE = (
    "No CUDA device: training on the CPU with the pure-torch rasteriser. This configuration is sized for a "
    "GPU and will be slow; the -cpu configurations (ds4d-cpu, ds4d-base-cpu) are made for CPUs."
)
"""The one line said when a run that asked for CUDA is moved to the CPU."""


def pick_device(machine, cuda_available: Optional[bool] = None) -> Optional[str]:
    """Move a nerfstudio ``MachineConfig`` asking for CUDA to the CPU when CUDA is absent.

    Returns:
        The line to tell the user when the device was changed, else None.
    """
    if machine.device_type != "cuda":
        return None
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if cuda_available:
        return None
    machine.device_type = "cpu"
    machine.num_devices = 1  # several processes need CUDA (NCCL) in nerfstudio's launcher
    return CPU_FALLBACK_NOTE


def _absolute(path: Path) -> Path:
    # abspath normalises '..' without resolving symlinks: the path the user gave, made absolute.
    return Path(os.path.abspath(path))


def dataset_folder(config) -> Optional[Path]:
    """The absolute dataset folder of a trainer config (``--data`` of the datamanager or dataparser)."""
    datamanager = config.pipeline.datamanager
    data = getattr(datamanager, "data", None) or getattr(datamanager.dataparser, "data", None)
    if data is None:
        return None
    data = _absolute(Path(data))
    return data.parent if data.suffix == ".json" else data


def prepare_run(config) -> None:
    """Pick the device, name the run after its dataset and make the data paths absolute (in place)."""
    from nerfstudio.utils.rich_utils import CONSOLE

    note = pick_device(config.machine)
    if note:
        CONSOLE.print(f"[bold yellow]{escape(note)}", soft_wrap=True)
    datamanager = config.pipeline.datamanager
    for owner in (config, datamanager, datamanager.dataparser):
        if getattr(owner, "data", None) is not None:
            owner.data = _absolute(Path(owner.data))
    folder = dataset_folder(config)
    if config.experiment_name is None and folder is not None and folder.name:
        config.experiment_name = folder.name
