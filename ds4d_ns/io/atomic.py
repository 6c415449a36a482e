"""Atomic file output: write to a temporary name beside the target, rename when complete.

Every file the plugin writes goes through :func:`atomic_output`, so it is also the one place
where

* written files get the mode the user's umask gives a normal file (``mkstemp`` creates 0600,
  and the rename would keep that: datasets and videos unreadable to other users and services);
* an open output folder (:mod:`ds4d_ns.io.output_folder`) hears of each file before it is
  written, to record it in its manifest and to refuse overwriting a file it does not own.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Protocol

PARTIAL_MARKER = ".partial-"
"""Temporary files are named ``.<target name>.partial-<random><suffix>`` beside their target."""


class WriteObserver(Protocol):
    """Something told of every file :func:`atomic_output` is about to write (an output folder)."""

    def before_write(self, path: Path) -> None:
        """Called before anything is created for ``path``; raising stops the write."""


_observers: "weakref.WeakSet[WriteObserver]" = weakref.WeakSet()


def add_write_observer(observer: WriteObserver) -> None:
    """Tell ``observer`` of every later atomic write, until removed or garbage-collected."""
    _observers.add(observer)


def remove_write_observer(observer: WriteObserver) -> None:
    """Stop telling ``observer`` of writes (no error if it was not added)."""
    _observers.discard(observer)


def write_observers() -> List[WriteObserver]:
    """The observers told of writes now."""
    return list(_observers)


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask (0644 under umask 022)."""
    # os.umask can only be read by setting it; set it straight back
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def partial_name_prefix(name: str) -> str:
    """Start of the names of the temporary files :func:`atomic_output` uses for a target ``name``."""
    return f".{name}{PARTIAL_MARKER}"


def partial_target_name(name: str) -> str | None:
    """The target name a temporary file ``name`` was writing, or None if ``name`` is not one."""
    if not name.startswith(".") or PARTIAL_MARKER not in name:
        return None
    return name[1:].rsplit(PARTIAL_MARKER, 1)[0]


@contextmanager
def atomic_output(path: Path, suffix: str = ".tmp", temp_dir: Path | None = None) -> Iterator[str]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds.

    ``suffix`` matters for writers that pick a format from the extension (video containers).
    ``temp_dir`` (same file system as ``path``) holds the temporary file instead of ``path``'s
    folder, for folders whose readers list every file (checkpoint folders).
    """
    path = Path(path)
    for observer in list(_observers):
        observer.before_write(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent if temp_dir is None else Path(temp_dir)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=partial_name_prefix(path.name), suffix=suffix)
    os.close(fd)
    try:
        os.chmod(tmp, default_file_mode())
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
