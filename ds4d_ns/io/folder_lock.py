"""One command at a time in an output folder: an exclusive lock file held for the command's life.

Two commands writing one folder at once (two ``ds4d-batch`` runs on one OUT, a ``ds4d-render`` while
another renders there) interleave their files and manifests and fail later with misleading errors, or
worse, both finish. So a command that writes a folder first creates :data:`LOCK_NAME` in it, atomically
(``O_CREAT | O_EXCL``: of two commands exactly one creates it), holding the holder's tool, process id,
host name and start time; it removes the file when it ends, on an exception too. A second command finds
the file and refuses at once, naming the holder and the lock file.

A command killed outright (SIGKILL, a power cut) leaves its lock behind. On the same host that lock is
told apart by its process id no longer being alive, and the next command takes it over, saying so. A
lock from another host cannot be checked from here: the message says to delete it if that command has
ended.

Within one process a lock is re-entrant in the sense that matters: a command run again in the same
process (the batch runs ds4d-process, ds4d-eval, ds4d-render and ds4d-export in-process, one after the
other) takes over a lock an earlier one of its own has not yet released, instead of refusing itself.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from rich.markup import escape

from ds4d_ns.errors import UserError

LOCK_NAME = ".ds4d.lock"
"""The lock file's name in a locked folder; the output-folder rules never count it as a user's file."""

_held: Dict[str, str] = {}
"""Locks this process holds: lock file path (absolute) -> the holder's token."""


class FolderLockError(UserError):
    """The folder is being written by another command (or its lock cannot be read); the message names both."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (one of another user's counts as running)."""
    if pid <= 0:
        return False  # 0 and negative ids name process groups for os.kill, never a holder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def _read(path: Path) -> Optional[Dict[str, Any]]:
    """The lock's content, or None when it cannot be read as one (being written, damaged, not ours)."""
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(content, dict) or not isinstance(content.get("pid"), int) or "host" not in content:
        return None
    return content


def _release(path: str, token: str) -> None:
    """Remove the lock file at ``path`` if it is still the one of ``token`` (a finalizer: no reference to the lock)."""
    if _held.get(path) != token:
        return  # taken over by a later holder in this process, or released already
    del _held[path]
    content = _read(Path(path))
    if content is not None and content.get("token") == token:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def describe_holder(content: Dict[str, Any]) -> str:
    """``ds4d-batch (pid 4242 on host, since 2025-01-01T10:00:00+0000)`` for messages."""
    tool = content.get("tool") or "a ds4d command"
    return f"{tool} (pid {content.get('pid')} on {content.get('host')}, since {content.get('started')})"


class FolderLock:
    """The lock of one folder for one command; :meth:`acquire` takes it, :meth:`release` gives it back.

    Released when the lock is garbage-collected or the interpreter exits, if not before: a command that
    ends by an exception between taking the lock and its ``with`` block does not keep the folder locked.
    """

    def __init__(self, folder: Path, tool: str) -> None:
        self.folder = Path(folder)
        self.tool = tool
        self.path = Path(os.path.abspath(self.folder / LOCK_NAME))
        self._token: Optional[str] = None
        self._finalizer: Optional[weakref.finalize] = None

    @property
    def held(self) -> bool:
        return self._token is not None and _held.get(str(self.path)) == self._token

    def acquire(self) -> "FolderLock":
        """Take the lock of the folder (which must exist); returns self.

        Raises:
            FolderLockError: another live command holds it (named, with the lock file), or its lock cannot be read.
        """
        if self.held:
            return self
        token = uuid.uuid4().hex
        content = {"tool": self.tool, "pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        data = (json.dumps({**content, "token": token}, indent=1) + "\n").encode()
        # a few rounds at most: each one either creates the file, refuses, or removes a stale lock that is gone
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                self._handle_existing()
                continue
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            self._token = token
            _held[str(self.path)] = token
            self._finalizer = weakref.finalize(self, _release, str(self.path), token)
            return self
        raise FolderLockError(
            f"{self.folder}: could not take its lock {self.path} (other commands keep taking it): try again"
        )

    def _handle_existing(self) -> None:
        """Refuse when a live holder has the lock; remove it when its holder has ended (the caller retries)."""
        holder = _read(self.path)
        if holder is None:
            time.sleep(0.2)  # created by another command an instant ago, its content not yet written
            holder = _read(self.path)
        if holder is None:
            if not self.path.exists():
                return  # released meanwhile
            raise FolderLockError(
                f"{self.folder}: its lock {self.path} cannot be read; if no ds4d command is writing this folder, "
                "delete that file and run again"
            )
        here = holder.get("host") == socket.gethostname()
        if here and holder["pid"] == os.getpid():
            if _held.pop(str(self.path), None) is not None:
                # an earlier command of this process has not released it yet (it ended by an exception whose
                # traceback is still alive): the process runs one command at a time, so this one takes over
                self.path.unlink(missing_ok=True)
                return
            # this process never took it: left by an ended process that had the same id (before a reboot)
        elif not here or _alive(holder["pid"]):
            ended = "" if here else f" If that command has ended on {holder.get('host')}, delete the lock file."
            raise FolderLockError(
                f"{self.folder} is being written by {describe_holder(holder)}; its lock is {self.path}. Wait for it "
                f"to end or use another folder.{ended}"
            )
        self._take_over(holder)

    def _take_over(self, holder: Dict[str, Any]) -> None:
        """Remove the lock of a holder that has ended, unless another command has replaced it meanwhile."""
        from nerfstudio.utils.rich_utils import CONSOLE

        # moved aside, not deleted: of two commands taking over at once only one moves it, and a lock that
        # turns out not to be the stale one read above (replaced meanwhile) is put back
        aside = self.path.with_name(f"{LOCK_NAME}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # the other command moved it first
        moved = _read(aside)
        if moved is None or moved.get("token") != holder.get("token") or moved.get("pid") != holder.get("pid"):
            try:
                os.link(aside, self.path)  # fails if a third command has locked the folder since: it keeps it
            except FileExistsError:
                pass
            os.unlink(aside)
            return
        os.unlink(aside)
        CONSOLE.log(
            f"[yellow]{escape(str(self.path))}: stale lock of {escape(describe_holder(holder))}, which has ended: "
            "taking it over"
        )

    def release(self) -> None:
        """Remove the lock file if this lock still holds it (no error when it does not)."""
        if self._finalizer is not None:
            self._finalizer()
        self._token = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


@contextmanager
def locked_folder(folder: Path, tool: str) -> Iterator[FolderLock]:
    """Hold ``folder``'s lock for the block, making the folder if it is missing.

    Folders made here that hold nothing when the block ends (a command that refused before writing) are
    removed again, so a refusal leaves no trace.

    Raises:
        FolderLockError: another command holds the folder.
        UserError: ``folder`` cannot be made (it, or a folder above it, is a file).
    """
    folder = Path(folder)
    made = [path for path in [folder, *folder.absolute().parents] if not path.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise UserError(f"{folder} cannot be made as a folder ({err.strerror}): pick another output path") from err
    try:
        with FolderLock(folder, tool) as lock:
            yield lock
    finally:
        for path in made:  # deepest first; one holding anything stays
            try:
                path.rmdir()
            except OSError:
                break
