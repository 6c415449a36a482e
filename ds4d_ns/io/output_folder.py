"""Output folders that never lose a file the tool did not write.

A tool keeps a manifest in its output folder (``ds4d_synth.json``, ``ds4d_export.json``, ...):
per job (one run of the tool, e.g. ``ds4d-render views``) its settings and the relative path of
every file it wrote. A file is added to the manifest (atomically) before it is written, so even a
killed run leaves every file it made listed. The rules that follow from it:

* A folder holding any file the manifest does not list is refused, unless ``force``; with
  ``force`` the tool writes beside those files and still never overwrites or deletes one of them.
* Replacing a job's earlier output (a ``force`` rerun with other settings, or a rerun of a
  command whose output is not resumable) deletes exactly the files listed for that job, never a
  folder by name.
* A rerun of a resumable job with the same settings keeps (and resumes) its files.
* An input inside the output folder is refused, with or without ``force``.
* One command at a time: the folder is locked (:mod:`ds4d_ns.io.folder_lock`) from
  :func:`prepare_output_dir` until :meth:`OutputFolder.close` (or until the folder object is gone), and a
  second command refuses at once, naming the first.

Writes are observed through :mod:`ds4d_ns.io.atomic`, so every atomic write into an open folder
(between :meth:`OutputFolder.start` and :meth:`OutputFolder.close`) is recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterable, Iterator, List, Optional

from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from ds4d_ns.errors import UserError
from ds4d_ns.io.atomic import (
    add_write_observer,
    atomic_output,
    partial_target_name,
    remove_write_observer,
    write_observers,
)
from ds4d_ns.io.folder_lock import LOCK_NAME, FolderLock

MANIFEST_FORMAT = 2
"""Version of the manifest layout: ``{"tool", "format", "jobs": {job: {"settings", "files"}}}``."""


class OutputFolderError(UserError, FileExistsError):
    """An output folder cannot be written as asked; the message names the file and the way out."""


def _absolute(path: Path) -> Path:
    # abspath, not resolve: a symlink inside the folder must stay visible as one
    return Path(os.path.abspath(path))


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_relative(rel: str, manifest: Path) -> str:
    parts = PurePosixPath(rel).parts
    if not rel or PurePosixPath(rel).is_absolute() or ".." in parts or rel != PurePosixPath(*parts).as_posix():
        raise OutputFolderError(
            f"{manifest}: lists {rel!r}, which is not a plain path inside the folder; this manifest was not "
            "written by this tool: move it away or pick another folder"
        )
    return rel


def _read_manifest(path: Path, tool: str) -> Dict[str, Dict[str, Any]]:
    """The jobs recorded in ``path`` (empty when there is no manifest)."""
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise OutputFolderError(
            f"{path}: unreadable manifest ({type(err).__name__}); it was not written by {tool} or is damaged: "
            "move it away or pick another folder"
        ) from err
    if isinstance(content, dict) and content.get("generator") == tool and "jobs" not in content:
        raise OutputFolderError(
            f"{path}: written by an older {tool} that did not record its files, so it cannot tell them from "
            "yours: delete that output yourself or pick another folder"
        )
    jobs = content.get("jobs") if isinstance(content, dict) else None
    if not (
        isinstance(content, dict)
        and content.get("tool") == tool
        and content.get("format") == MANIFEST_FORMAT
        and isinstance(jobs, dict)
        and all(isinstance(job, dict) and isinstance(job.get("files"), list) for job in jobs.values())
    ):
        raise OutputFolderError(f"{path}: not a manifest of {tool}: move it away or pick another folder")
    for job in jobs.values():
        job["files"] = [_check_relative(rel, path) for rel in job["files"] if isinstance(rel, str)]
    return jobs


def _foreign_files(root: Path, owned: set, manifest_name: str) -> Iterator[str]:
    """Relative paths under ``root`` of files (and symlinks) that the manifest does not account for."""
    for dirpath, dirnames, filenames in os.walk(root):
        folder = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        links = [name for name in dirnames if os.path.islink(os.path.join(dirpath, name))]
        for name in sorted(filenames) + links:
            rel = (folder / name).as_posix()
            target = partial_target_name(name)
            partial_of = None if target is None else (folder / target).as_posix()
            if rel == manifest_name or rel in owned or partial_of == manifest_name or partial_of in owned:
                continue
            if name.startswith(LOCK_NAME):  # a command's lock (ds4d_ns.io.folder_lock), not a user's file
                continue
            yield rel


def refuse_a_file_in_the_way(out: Path) -> None:
    """Raise if ``out``, or the nearest existing folder above it, is a file: the folder could not be made.

    Without this the first write fails with ``[Errno 20] Not a directory``, which does not say which part
    of the path is the file.
    """
    out = Path(out)
    for path in (out, *out.parents):
        if path.exists():
            if path.is_dir():
                return
            if path == out:
                raise OutputFolderError(f"{out} exists and is not a folder: pick another output path")
            raise OutputFolderError(
                f"{out}: {path} is a file, not a folder, so no folder can be made below it; pick another output path"
            )


def refuse_inputs_inside(out: Path, inputs: Iterable[Optional[Path]], tool: str) -> None:
    """Raise if any of ``inputs`` lies inside (or is) the output folder ``out``."""
    out_real = Path(os.path.realpath(out))
    for given in inputs:
        if given is None:
            continue
        if _is_within(Path(os.path.realpath(given)), out_real):
            raise OutputFolderError(
                f"{out}: the output folder holds the input {given}; {tool} never writes where its inputs are "
                "(with or without --force): pick an output folder outside it"
            )


class OutputFolder:
    """An output folder of one job of a tool; made by :func:`prepare_output_dir`.

    ``start()`` creates the folder, removes the job's previous files unless resuming, writes the
    manifest and records every later atomic write under the folder until ``close()`` (or use it as
    a context manager).
    """

    def __init__(
        self,
        root: Path,
        manifest_name: str,
        tool: str,
        job: str,
        settings: Dict[str, Any],
        jobs: Dict[str, Dict[str, Any]],
        resume: bool,
        lock: Optional[FolderLock] = None,
    ) -> None:
        self.root = Path(root)
        self.tool = tool
        self.job = job
        self.manifest_name = manifest_name
        self.resume = resume
        """Whether files of an earlier run with the same settings are kept for reuse."""
        self._settings = settings
        self._jobs = jobs
        previous = jobs.get(job, {}).get("files", [])
        self._previous: List[str] = list(previous)
        self._files: List[str] = list(previous) if resume else []
        self._lock = lock
        """The folder's lock, held from :func:`prepare_output_dir` (or :meth:`start`, for a new folder) to close."""

    @property
    def manifest_path(self) -> Path:
        return self.root / self.manifest_name

    @property
    def files(self) -> List[str]:
        """Relative paths of the files this job has written (so far), in order."""
        return list(self._files)

    def owns(self, rel: str) -> bool:
        """Whether the manifest lists ``rel`` (a relative POSIX path) as written by this tool."""
        return rel in self._files or any(rel in job["files"] for job in self._jobs.values())

    def check_can_write(self, names: Iterable[str]) -> None:
        """Refuse now (before long work and before the first write) if a file this job will write exists and is
        not the tool's, or would go below a file (or link) in a folder's place that is not the tool's.

        Args:
            names: relative POSIX paths of every file the job will write.
        """
        for rel in names:
            # the folders on the way first: below a file there is no path to test, only an error on writing
            for folder in reversed(PurePosixPath(rel).parents[:-1]):
                path = self.root / folder
                if (path.is_symlink() or (path.exists() and not path.is_dir())) and not self.owns(folder.as_posix()):
                    raise self._not_ours(folder.as_posix())
            path = self.root / rel
            if (path.exists() or path.is_symlink()) and not self.owns(rel):
                raise self._not_ours(rel)

    def start(self) -> "OutputFolder":
        self.root.mkdir(parents=True, exist_ok=True)
        if self._lock is None:  # a folder new at prepare_output_dir: locked now it exists, before any write
            self._lock = FolderLock(self.root, self.tool).acquire()
        if not self.resume and self._previous:
            # the manifest still lists them until the rewrite below: an interruption loses no record
            self._remove(self._previous)
        self._jobs[self.job] = {"settings": self._settings, "files": self._files}
        self._write_manifest()
        for other in write_observers():
            if isinstance(other, OutputFolder) and _absolute(other.root) == _absolute(self.root):
                remove_write_observer(other)  # an earlier, interrupted run on this folder: its record is stale
        add_write_observer(self)
        return self

    def close(self) -> None:
        remove_write_observer(self)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "OutputFolder":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def before_write(self, path: Path) -> None:
        """Record ``path`` in the manifest before it is written (called by ``atomic_output``)."""
        absolute, root = _absolute(path), _absolute(self.root)
        if not _is_within(absolute, root) or absolute == root:
            return
        rel = absolute.relative_to(root).as_posix()
        if rel == self.manifest_name:
            return
        parent_real = Path(os.path.realpath(absolute.parent))
        expected = Path(os.path.realpath(root)) / PurePosixPath(rel).parent
        if parent_real != expected:
            raise OutputFolderError(
                f"{path}: {self.tool} would write through a symlinked folder inside {self.root}, into "
                f"{parent_real}, which it does not own: remove the link or pick another folder"
            )
        if rel in self._files:
            return
        if (absolute.exists() or absolute.is_symlink()) and not self.owns(rel):
            raise self._not_ours(rel)
        for name, job in self._jobs.items():
            if name != self.job and rel in job["files"]:
                job["files"].remove(rel)  # this job's output now
        self._files.append(rel)
        self._write_manifest()

    def _not_ours(self, rel: str) -> OutputFolderError:
        # a refusal the command stops at: the folder's lock goes now, not when this object is collected (the
        # error's traceback keeps it alive as long as the error is kept)
        self.close()
        return OutputFolderError(
            f"{self.root / rel}: exists and was not written by {self.tool}; it is never overwritten, even with "
            "--force: move it away or pick another folder"
        )

    def _write_manifest(self) -> None:
        content = {"tool": self.tool, "format": MANIFEST_FORMAT, "jobs": self._jobs}
        with atomic_output(self.manifest_path) as tmp:
            Path(tmp).write_text(json.dumps(content, indent=1) + "\n")

    def _remove(self, files: List[str]) -> None:
        root_real = Path(os.path.realpath(self.root))
        folders = set()
        for rel in files:
            path = self.root / rel
            if Path(os.path.realpath(path.parent)) != root_real / PurePosixPath(rel).parent:
                continue  # reached through a symlink: not a file this tool wrote in this folder
            if path.is_symlink() or path.is_file():
                path.unlink()
            folders.add(path.parent)
            if path.parent.is_dir():  # leftovers of an interrupted atomic write of this very file
                for partial in path.parent.iterdir():
                    if partial_target_name(partial.name) == path.name and not partial.is_dir():
                        partial.unlink()
        # folders emptied by the removal go too (deepest first); a folder still holding anything stays
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            while folder != self.root and _is_within(_absolute(folder), _absolute(self.root)):
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent


def prepare_output_dir(
    out: Path,
    manifest_name: str,
    settings: Dict[str, Any],
    force: bool,
    tool: str,
    *,
    job: Optional[str] = None,
    inputs: Iterable[Optional[Path]] = (),
    resumable: bool = True,
) -> OutputFolder:
    """Check that ``out`` may be written by a job of ``tool``; nothing is written yet.

    Args:
        settings: JSON-able settings of the job; a resumable job with the same settings resumes.
        force: write into a folder holding files the tool did not write (beside them), or replace a
            resumable job's output of other settings.
        job: name of the job within the manifest (default: the tool's name); a tool with several
            outputs in one folder (``ds4d-render views`` and ``orbit``) uses one job per output.
        inputs: the job's input files and folders; one inside ``out`` is always refused.
        resumable: False for jobs that replace their previous output whole on every run.

    Raises:
        OutputFolderError: the folder is not ours to write (the message says why and what to do).
    """
    out = Path(out)
    job = job or tool
    refuse_inputs_inside(out, inputs, tool)
    refuse_a_file_in_the_way(out)
    if out.is_symlink():
        raise OutputFolderError(f"{out} is a symlink: give the folder it points to, or another folder")
    settings = json.loads(json.dumps(settings))  # as it reads back from the manifest (tuples become lists)
    # one command at a time in a folder, from before its manifest is read (a new folder: from start())
    lock = FolderLock(out, tool).acquire() if out.is_dir() else None
    try:
        jobs = _read_manifest(out / manifest_name, tool) if out.is_dir() else {}
        previous = jobs.get(job)
        resume = resumable and previous is not None and previous.get("settings") == settings
        folder = OutputFolder(out, manifest_name, tool, job, settings, jobs, resume, lock)
        if resume or not out.is_dir():
            return folder
        if resumable and previous is not None and not force:
            raise OutputFolderError(
                f"refusing to write into {out}: it holds a {tool} output with different settings "
                f"({previous.get('settings')}). Pick another folder or pass --force (which replaces that output)."
            )
        owned = {rel for entry in jobs.values() for rel in entry["files"]}
        foreign = next(_foreign_files(out, owned, manifest_name), None)
        if foreign is not None:
            if not force:
                raise OutputFolderError(
                    f"refusing to write into {out}: it is not a {tool} output (it holds {foreign}, which {tool} did "
                    "not write). Pick another folder, or pass --force to write beside such files (they are never "
                    "deleted or overwritten)."
                )
            CONSOLE.log(
                f"[yellow]--force: writing into {escape(str(out))} beside files {escape(tool)} did not write "
                "(they are left alone)"
            )
        return folder
    except BaseException:
        if lock is not None:
            lock.release()
        raise
