"""The batch manifest ``OUT/ds4d_batch.json``: the batch's settings and each clip's state.

States: ``pending`` (not started), ``running`` (a task has started it: left so by a batch that was
killed, which a rerun notices and runs again), ``done`` (every step finished; a rerun skips it while the
outputs it lists are there with the sizes recorded then, and runs it again otherwise) and
``failed`` (with the error's one line and its traceback; a rerun retries it). Only the batch's driver
writes the manifest, atomically (``ds4d_ns.io.writers``) after every change, so a kill at any moment
leaves the last state whole.

OUT must be new, empty or an earlier ``ds4d-batch`` output made with the same settings (then resumed); a
clip whose name now stands for another source or other options is refused rather than mixed with its
earlier outputs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Literal, Optional

from ds4d_ns.batch.jobs import ClipJob
from ds4d_ns.errors import UserError
from ds4d_ns.io.folder_lock import LOCK_NAME
from ds4d_ns.io.output_folder import refuse_a_file_in_the_way
from ds4d_ns.io.writers import write_json_atomic

TOOL = "ds4d-batch"
MANIFEST_NAME = "ds4d_batch.json"
MANIFEST_FORMAT = 1
ClipState = Literal["pending", "running", "done", "failed"]
STATES = ("pending", "running", "done", "failed")


class BatchOutputError(UserError):
    """OUT cannot hold this batch; the message names the file or setting and the way out."""


def now() -> str:
    """The local time as ISO 8601 to the second, for the manifest."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    return [
        f"{key}: {old.get(key)!r} then, {new.get(key)!r} now"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


class BatchManifest:
    """Each clip's state in OUT, saved atomically after every change."""

    def __init__(self, out: Path, settings: Dict[str, Any], clips: Dict[str, Dict[str, Any]]) -> None:
        self.out = Path(out)
        self.settings = settings
        self.clips = clips

    @property
    def path(self) -> Path:
        return self.out / MANIFEST_NAME

    @classmethod
    def open(cls, out: Path, settings: Dict[str, Any], jobs: Iterable[ClipJob]) -> "BatchManifest":
        """The manifest of OUT (read, or new), with every clip of ``jobs`` listed; nothing is written yet.

        Raises:
            BatchOutputError: OUT is a file, holds files of something else, or an earlier batch with other
                settings, or a clip name that stood for another clip there.
        """
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise BatchOutputError(f"OUT {out} is a file; give a folder (new, empty, or an earlier ds4d-batch output)")
        refuse_a_file_in_the_way(out)  # a file above OUT: named now, not as "Not a directory" when writing
        path = out / MANIFEST_NAME
        clips: Dict[str, Dict[str, Any]] = {}
        if path.is_file():
            clips = cls._read(path, settings)
        elif out.is_dir() and any(entry.name != LOCK_NAME for entry in out.iterdir()):
            raise BatchOutputError(
                f"OUT {out} holds files and no {MANIFEST_NAME}: it is not a ds4d-batch output; give a new or empty "
                "folder"
            )
        for job in jobs:
            record = clips.get(job.name)
            if record is None:
                clips[job.name] = {"state": "pending", "attempts": 0, "clip": job.identity()}
            elif record.get("clip") != job.identity():
                changed = _differences(record.get("clip") or {}, job.identity())
                raise BatchOutputError(
                    f"{path}: clip {job.name!r} ({job.origin}) was made from another clip or options "
                    f"({'; '.join(changed)}); give it another name or use another OUT"
                )
        return cls(out, settings, clips)

    @staticmethod
    def _read(path: Path, settings: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
        try:
            content = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise BatchOutputError(
                f"{path}: unreadable ({type(err).__name__}); move it away or use another OUT"
            ) from err
        if not isinstance(content, dict) or content.get("tool") != TOOL or not isinstance(content.get("clips"), dict):
            raise BatchOutputError(f"{path}: not a {TOOL} manifest; move it away or use another OUT")
        if content.get("format") != MANIFEST_FORMAT:
            raise BatchOutputError(
                f"{path}: manifest format {content.get('format')!r}, this {TOOL} reads {MANIFEST_FORMAT}; use "
                "another OUT"
            )
        if content.get("settings") != settings:
            changed = _differences(content.get("settings") or {}, settings)
            raise BatchOutputError(
                f"OUT {path.parent} holds a batch made with other settings ({'; '.join(changed)}): rerun with the same "
                "settings to resume it, or use another OUT"
            )
        clips = content["clips"]
        for name, record in clips.items():
            if not isinstance(record, dict) or record.get("state") not in STATES:
                raise BatchOutputError(
                    f"{path}: clip {name!r} has no valid state; move the file away or use another OUT"
                )
        return clips

    def save(self) -> None:
        """Write the manifest atomically."""
        content = {"tool": TOOL, "format": MANIFEST_FORMAT, "settings": self.settings, "clips": self.clips}
        write_json_atomic(self.path, content)

    def state(self, name: str) -> ClipState:
        return self.clips[name]["state"]

    def mark_running(self, name: str, started: Optional[str] = None, where: Optional[Dict[str, Any]] = None) -> None:
        """A task has started the clip (``where``: its host and process id, when known)."""
        record = self.clips[name]
        record.update(
            state="running", started=started or now(), finished=None, minutes=None, error=None, traceback=None
        )
        record["attempts"] = int(record.get("attempts", 0)) + 1
        if where:
            record["worker"] = where
        self.save()

    def mark_finished(self, name: str, outcome: Dict[str, Any]) -> None:
        """Record a clip's outcome (``state`` done or failed, minutes, metrics, outputs, error, traceback)."""
        record = self.clips[name]
        if record["state"] != "running":  # finished before the driver saw it start
            record["attempts"] = int(record.get("attempts", 0)) + 1
            record["started"] = outcome.get("started") or now()
        record.update(
            state=outcome["state"],
            finished=now(),
            minutes=outcome.get("minutes"),
            metrics=outcome.get("metrics"),
            outputs=outcome.get("outputs") or {},
            error=outcome.get("error"),
            traceback=outcome.get("traceback"),
        )
        # what a later run checks before it skips the clip (outputs_problem)
        record["sizes"] = self.output_sizes(record["outputs"]) if outcome["state"] == "done" else None
        self.save()

    def _output_files(self, outputs: Dict[str, str]) -> Iterator[Path]:
        """Every file of a clip's outputs inside OUT: a file output, every file of a folder output, and for the
        training run (its ``config``) the whole run folder, its checkpoints with it."""
        root = Path(os.path.abspath(self.out))
        for key, given in outputs.items():
            path = Path(os.path.abspath(given))
            if key == "config":
                path = path.parent
            if root not in path.parents:
                continue  # a ready dataset trained where it is: the user's input, not an output
            if path.is_file():
                yield path
            for folder, _, names in os.walk(path):
                yield from (Path(folder) / name for name in sorted(names) if not name.startswith(LOCK_NAME))

    def output_sizes(self, outputs: Dict[str, str]) -> Dict[str, int]:
        """Bytes of every file of :meth:`_output_files`, by its path relative to OUT."""
        root = Path(os.path.abspath(self.out))
        return {path.relative_to(root).as_posix(): path.stat().st_size for path in self._output_files(outputs)}

    def outputs_problem(self, name: str, required: Iterable[str]) -> Optional[str]:
        """Why a clip's outputs are not what its manifest records (None when they are), checked cheaply.

        Every output listed (and each of ``required``) must exist, and each file recorded when the clip was
        done must have the size recorded. A clip done before sizes were recorded gets them recorded now.
        """
        record = self.clips[name]
        outputs = record.get("outputs")
        if not isinstance(outputs, dict):
            return "it lists no outputs"
        missing = [key for key in required if not outputs.get(key)]
        if missing:
            return f"it lists no {', '.join(missing)} output"
        for key, given in outputs.items():
            if not isinstance(given, str) or not os.path.exists(given):
                return f"its {key} output {given} does not exist"
        sizes = record.get("sizes")
        if not isinstance(sizes, dict):
            record["sizes"] = self.output_sizes(outputs)
            return None
        for rel, size in sizes.items():
            path = self.out / rel
            try:
                now_size = path.stat().st_size
            except OSError:
                return f"{path} does not exist"
            if now_size != size:
                return f"{path} has {now_size} bytes, {size} when the clip was done"
        return None
