"""Output folders that a rerun resumes and that never overwrite somebody else's files.

A tool writes a manifest (its name and settings) into its output folder. A rerun with the same
settings resumes; a folder holding anything else is refused unless ``force``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from nerfstudio.utils.rich_utils import CONSOLE


def prepare_output_dir(out: Path, manifest_name: str, settings: Dict[str, Any], force: bool, tool: str) -> bool:
    """Check that ``out`` may be written; return whether files already there can be reused.

    Raises:
        FileExistsError: ``out`` holds anything other than an earlier run of ``tool`` with the same
            settings and ``force`` is off.
    """
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return False
    manifest = out / manifest_name
    previous = None
    if manifest.is_file():
        try:
            previous = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            previous = None
    if previous == settings:
        return True
    if force:
        CONSOLE.log(f"[yellow]--force: writing into non-empty {out}; every file of this run is rewritten")
        return False
    if previous is None:
        reason = f"it is not empty and is not a {tool} output"
    else:
        reason = f"it holds a {tool} output with different settings ({previous.get('settings')})"
    raise FileExistsError(f"refusing to write into {out}: {reason}. Pick another folder or pass --force.")
