"""One command at a time in an output folder (``ds4d_ns.io.folder_lock``).

A second command refuses at once naming the holder (pid, host, since) and the lock file; a lock whose
holder has ended is taken over, said in one line; a lock from another host is never taken; the lock is
released at the end of a command, also when it fails, and it is never counted as a user's file. The
holder of a live lock is a real second process (a small Python child holding it until told to stop).
"""

from __future__ import annotations

import gc
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from nerfstudio.utils.rich_utils import CONSOLE

from ds4d_ns.errors import UserError
from ds4d_ns.io.folder_lock import LOCK_NAME, FolderLock, FolderLockError, locked_folder
from ds4d_ns.io.output_folder import prepare_output_dir
from ds4d_ns.io.writers import write_json_atomic

BIN = Path(sys.executable).parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HOLD = (
    "import sys\n"
    "from ds4d_ns.io.folder_lock import FolderLock\n"
    "lock = FolderLock(sys.argv[1], sys.argv[2]).acquire()\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
    "lock.release()\n"
)
"""A second process: takes the folder's lock, says so, and holds it until its stdin closes."""


def hold_lock(folder: Path, tool: str = "ds4d-batch") -> subprocess.Popen:
    """A running process holding ``folder``'s lock (close its stdin to end it, or kill it to leave a stale lock)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), tool], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def ended_pid() -> int:
    """The id of a process of this host that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_holder_is_refused_naming_the_first_and_gets_it_once_released(tmp_path):
    holder = hold_lock(tmp_path, "ds4d-render")
    try:
        with pytest.raises(FolderLockError) as err:
            FolderLock(tmp_path, "ds4d-export").acquire()
        message = str(err.value)
        content = json.loads((tmp_path / LOCK_NAME).read_text())
        assert content["pid"] == holder.pid and content["host"] == socket.gethostname()
        assert f"ds4d-render (pid {holder.pid} on {socket.gethostname()}, since {content['started']})" in message
        assert str(tmp_path / LOCK_NAME) in message and "\n" not in message
        assert isinstance(err.value, UserError)  # the commands print it as one line and exit 2
    finally:
        holder.communicate("")  # ends it: it releases its lock
    assert not (tmp_path / LOCK_NAME).exists()
    with FolderLock(tmp_path, "ds4d-export") as lock:
        assert lock.held and json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over_and_one_from_another_host_is_not(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(CONSOLE, "width", 400)  # the log line on one line
    stale = {"tool": "ds4d-process", "pid": ended_pid(), "host": socket.gethostname(), "started": "then"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
    with FolderLock(tmp_path, "ds4d-eval"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["tool"] == "ds4d-eval"
    logged = capsys.readouterr().out.replace("\n", "")
    assert "stale lock of ds4d-process" in logged and f"pid {stale['pid']}" in logged and "taking it over" in logged
    assert sorted(os.listdir(tmp_path)) == []  # nothing left: not the lock, nor the stale one moved aside

    elsewhere = {**stale, "host": "another-host.example"}  # its process cannot be checked from here
    (tmp_path / LOCK_NAME).write_text(json.dumps(elsewhere))
    with pytest.raises(FolderLockError, match="on another-host.example.*delete the lock file"):
        FolderLock(tmp_path, "ds4d-eval").acquire()
    (tmp_path / LOCK_NAME).write_text("")  # a lock that cannot be read is never taken for stale
    with pytest.raises(FolderLockError, match="cannot be read"):
        FolderLock(tmp_path, "ds4d-eval").acquire()


def test_an_earlier_command_of_this_process_does_not_lock_out_the_next(tmp_path):
    earlier = FolderLock(tmp_path, "ds4d-process").acquire()  # not released: ended by an exception, say
    later = FolderLock(tmp_path, "ds4d-process").acquire()
    earlier.release()  # the earlier one's release leaves the later one's lock alone
    assert later.held and (tmp_path / LOCK_NAME).is_file()
    later.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_an_output_folder_is_locked_from_prepare_to_close_and_never_counts_its_lock_as_a_users_file(tmp_path):
    out = tmp_path / "out"
    output = prepare_output_dir(out, "tool.json", {"a": 1}, False, "ds4d-tool")
    assert not out.exists()  # nothing is written before start()
    with output:
        assert json.loads((out / LOCK_NAME).read_text())["tool"] == "ds4d-tool"
        write_json_atomic(out / "result.json", {"ok": True})
    assert sorted(os.listdir(out)) == ["result.json", "tool.json"]

    again = prepare_output_dir(out, "tool.json", {"a": 1}, False, "ds4d-tool")  # an existing folder: locked now
    assert (out / LOCK_NAME).is_file() and again.resume
    with again:
        write_json_atomic(out / "result.json", {"ok": "again"})
    assert not (out / LOCK_NAME).exists()

    # a command whose folder object is dropped without close() (ds4d-process) or that fails before its
    # `with` block releases it as well
    dropped = prepare_output_dir(out, "tool.json", {"a": 1}, False, "ds4d-tool").start()
    assert (out / LOCK_NAME).is_file()
    del dropped
    gc.collect()
    assert not (out / LOCK_NAME).exists()


def test_a_second_command_on_a_held_folder_refuses_before_reading_it(tmp_path):
    out = tmp_path / "out"
    with prepare_output_dir(out, "tool.json", {"a": 1}, False, "ds4d-tool"):
        write_json_atomic(out / "result.json", {"ok": True})
    holder = hold_lock(out, "ds4d-tool")
    try:
        with pytest.raises(FolderLockError, match=f"is being written by ds4d-tool \\(pid {holder.pid} on "):
            prepare_output_dir(out, "tool.json", {"a": 2}, True, "ds4d-tool")
    finally:
        holder.communicate("")
    assert json.loads((out / "tool.json").read_text())["jobs"]["ds4d-tool"]["settings"] == {"a": 1}


def test_a_refused_command_leaves_no_folder_it_made(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError):
        with locked_folder(out, "ds4d-batch"):
            assert (out / LOCK_NAME).is_file()
            raise RuntimeError("refused before any work")
    assert not (tmp_path / "new").exists()


def test_ds4d_synth_into_a_held_folder_prints_one_line_and_exits_2(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    holder = hold_lock(out, "ds4d-synth")
    try:
        result = subprocess.run(
            [str(BIN / "ds4d-synth"), str(out), "--frames", "2", "--resolution", "16"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            env={**os.environ, "COLUMNS": "300"},
        )
    finally:
        holder.communicate("")
    lines = [ANSI.sub("", line).strip() for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stdout, result.stdout
    assert lines[-1].startswith(f"ds4d-synth: {out} is being written by ds4d-synth (pid {holder.pid} on ")
    assert str(out / LOCK_NAME) in lines[-1]
    assert os.listdir(out) == []
