"""What a ``ds4d-process`` output was made from, so a rerun notices replaced inputs.

The manifest keys a run on its settings and on the content of every input file it read (size,
modification time and SHA-256): frames replaced under the same names are a different run, not a
resume. :func:`describe_changes` says what differs between two manifests, for the refusal or the
``--force`` log.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Iterable, List

_CHUNK = 1 << 20


def file_fingerprint(path: Path) -> Dict[str, Any]:
    """Size in bytes, modification time (ns) and SHA-256 of a file."""
    stat = Path(path).stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


def fingerprints(paths: Iterable[Path]) -> Dict[str, Dict[str, Any]]:
    """Fingerprint of each file, keyed by its resolved path (each file once)."""
    return {str(Path(p).resolve()): file_fingerprint(Path(p)) for p in paths}


def _flag(key: str) -> str:
    return {"input": "VIDEO_OR_FRAME_DIR", "output": "OUT"}.get(key, "--" + key.replace("_", "-"))


def _setting_changes(previous: Any, current: Any, key: str = "") -> List[str]:
    if isinstance(previous, dict) and isinstance(current, dict):
        changes: List[str] = []
        for name in list(previous) + [k for k in current if k not in previous]:
            # nested generator settings are flags without prefix (--num-inference-steps)
            changes += _setting_changes(previous.get(name), current.get(name), name)
        return changes
    return [] if previous == current else [f"{_flag(key)} {previous} -> {current}"]


def _input_changes(previous: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
    changes = []
    for path in list(previous) + [p for p in current if p not in previous]:
        old, new = previous.get(path), current.get(path)
        if old is None:
            changes.append(f"{path}: not used before")
        elif new is None:
            changes.append(f"{path}: no longer used")
        elif old != new:
            what = [
                label
                for label, field in (("content", "sha256"), ("size", "size"), ("modification time", "mtime_ns"))
                if old.get(field) != new.get(field)
            ]
            changes.append(f"{path}: {', '.join(what) or 'changed'} changed")
    return changes


def describe_changes(previous: Dict[str, Any], current: Dict[str, Any], limit: int = 6) -> str:
    """What differs between two manifests, in one line (the first ``limit`` differences)."""
    changes = []
    if previous.get("version") != current.get("version"):
        changes.append(f"made by format version {previous.get('version')}, now {current.get('version')}")
    changes += _setting_changes(previous.get("settings") or {}, current.get("settings") or {})
    if "inputs" not in previous:
        changes.append("its inputs' content was not recorded")
    else:
        changes += _input_changes(previous.get("inputs") or {}, current.get("inputs") or {})
    if len(changes) > limit:
        changes = changes[:limit] + [f"and {len(changes) - limit} more"]
    return "; ".join(changes) or "nothing"
