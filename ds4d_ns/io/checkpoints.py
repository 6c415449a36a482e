"""Checkpoints that survive a full disk or a kill, and a loader that skips a damaged one.

Nerfstudio saves ``step-XXXXXXXXX.ckpt`` in place, so a full disk leaves a truncated newest
checkpoint that a resume then picks and cannot load. Here a checkpoint is written under a temporary
name in the run folder (not in the checkpoint folder, whose every file nerfstudio's loaders parse
as a step number), synced, and renamed into place; readers take the newest checkpoint that loads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from ds4d_ns.errors import UserError
from ds4d_ns.io.atomic import atomic_output, partial_target_name

_CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.ckpt$")


class CheckpointError(UserError):
    """No usable checkpoint where one was expected; the message names the folder or file."""


def checkpoint_name(step: int) -> str:
    """Nerfstudio's checkpoint file name for ``step``."""
    return f"step-{step:09d}.ckpt"


def checkpoint_files(folder: Path) -> List[Tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``folder``, oldest first; other files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT_NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint_atomic(state: Dict[str, Any], path: Path) -> None:
    """``torch.save`` ``state`` to ``path``: a complete file or none, even on a full disk or a kill."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=".tmp", temp_dir=path.parent.parent) as tmp:
        torch.save(state, tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())  # the rename must not reach the disk before the data does
    # leftovers of saves killed before their rename: temporary files named after a checkpoint
    for leftover in path.parent.parent.iterdir():
        target = partial_target_name(leftover.name)
        if target is not None and _CHECKPOINT_NAME.match(target) and leftover.is_file():
            leftover.unlink()


def check_checkpoint_folder(folder: Path) -> None:
    """Raise :class:`CheckpointError` now, before loading anything, if ``folder`` holds no non-empty checkpoint."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder (give the nerfstudio_models folder of a run)")
    files = checkpoint_files(folder)
    if not files:
        raise CheckpointError(f"{folder}: no checkpoint (step-*.ckpt) in this folder; the run saved none yet")
    if all(path.stat().st_size == 0 for _, path in files):
        raise CheckpointError(f"{folder}: every checkpoint is empty (0 bytes): {', '.join(p.name for _, p in files)}")


def check_checkpoint_file(path: Path) -> None:
    """Raise :class:`CheckpointError` if ``path`` is missing or empty."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the checkpoint is empty (0 bytes)")


def load_checkpoint_file(path: Path) -> Dict[str, Any]:
    """The state saved in ``path`` (on the CPU, tensors only: ``weights_only``).

    Raises:
        CheckpointError: the file is missing, empty, truncated or not a nerfstudio checkpoint.
    """
    check_checkpoint_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncation and corruption surface as many types (EOF, zip, unpickling)
        raise CheckpointError(f"{path}: the checkpoint does not load ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or "pipeline" not in state or "step" not in state:
        raise CheckpointError(f"{path}: not a nerfstudio checkpoint (no pipeline state and step)")
    return state


def load_newest_checkpoint(folder: Path, step: Optional[int] = None) -> Tuple[Path, Dict[str, Any]]:
    """The newest checkpoint in ``folder`` that loads (or the one of ``step``), and its state.

    A checkpoint that does not load (truncated by a full disk, damaged) is skipped with a warning
    naming it, and the one before it is used.

    Raises:
        CheckpointError: none loads; the message names the folder and each failure.
    """
    folder = Path(folder)
    if step is not None:
        path = folder / checkpoint_name(step)
        return path, load_checkpoint_file(path)
    check_checkpoint_folder(folder)
    failures = []
    for _, path in reversed(checkpoint_files(folder)):
        try:
            state = load_checkpoint_file(path)
        except CheckpointError as err:
            failures.append(str(err))
            CONSOLE.print(f"[yellow]Skipping a checkpoint that does not load: {escape(str(err))}")
            continue
        return path, state
    raise CheckpointError(f"{folder}: no checkpoint loads: " + "; ".join(failures))
