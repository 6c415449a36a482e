"""Headless Chromium driven through the DevTools protocol, to look at an exported web page as a browser shows it.

Used by the web page's test and its benchmark (``tests/test_export_web.py``, ``benchmarks/web_page.py``); not by
the export itself. It needs Debian's ``chromium`` (``scripts/setup.sh`` installs it) and the ``websockets``
package. WebGL runs on SwiftShader, Chromium's CPU implementation, so a machine without a GPU renders the page
too (slowly). :func:`serve_folder` serves a folder on 127.0.0.1 from a thread, as any static host would.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
"""Executables tried, in order (Debian's package installs ``chromium``)."""


def find_chromium() -> Optional[str]:
    """Path of a Chromium executable on PATH (``$DS4D_CHROMIUM`` first), or None."""
    given = os.environ.get("DS4D_CHROMIUM")
    if given:
        return given
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # a test's output is no place for an access log


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) while the block runs; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class PageError(RuntimeError):
    """The page threw, or an evaluated script failed."""


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to the process group ``process`` leads (started with ``start_new_session``)."""
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group has ended


def _remove_profile(folder: Path, attempts: int = 20) -> None:
    """Delete a browser profile folder, retrying while a dying helper process still writes into it."""
    for _ in range(attempts):
        try:
            shutil.rmtree(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    shutil.rmtree(folder, ignore_errors=True)


class HeadlessChromium:
    """One headless Chromium with one page, spoken to over the DevTools protocol (a context manager).

    ``errors`` collects what the page reported as errors: console errors, uncaught exceptions and error
    log entries (failed loads among them).
    """

    def __init__(self, width: int, height: int, executable: Optional[str] = None, timeout_s: float = 120.0) -> None:
        self.width, self.height, self.timeout_s = width, height, timeout_s
        found = executable or find_chromium()
        if found is None:
            raise FileNotFoundError(f"no Chromium found (tried {', '.join(CHROMIUM_NAMES)}; or set DS4D_CHROMIUM)")
        self.executable: str = found
        self.errors: List[str] = []
        self.console: List[str] = []
        self._events: List[Dict[str, Any]] = []
        self._next_id = 0
        self._process: Optional[subprocess.Popen] = None
        self._profile: Optional[tempfile.TemporaryDirectory] = None
        self._socket: Any = None
        self._stack = ExitStack()

    def __enter__(self) -> "HeadlessChromium":
        from websockets.sync.client import connect

        self._profile = tempfile.TemporaryDirectory(prefix="ds4d-chromium-", ignore_cleanup_errors=True)
        args = [
            self.executable,
            "--headless=new",
            # WebGL on the CPU: SwiftShader through ANGLE (Chromium asks for the "unsafe" switch since it
            # stopped falling back to SwiftShader on its own)
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--ignore-gpu-blocklist",
            "--remote-debugging-port=0",
            f"--user-data-dir={self._profile.name}",
            f"--window-size={self.width},{self.height}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--mute-audio",
            "about:blank",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root (CI containers)
        try:
            # its own process group: Chromium's helpers (renderer, GPU, crash handler) outlive the browser
            # process for a moment and keep writing the profile, so __exit__ stops the group, not one process
            self._process = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            port = self._wait_for_port(Path(self._profile.name) / "DevToolsActivePort")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                targets = json.load(response)
            page = next(target for target in targets if target.get("type") == "page")
            self._socket = self._stack.enter_context(
                connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
            )
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.close()  # the DevTools connection
        self._socket = None
        if self._process is not None:
            _signal_group(self._process, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(self._process, signal.SIGKILL)  # any helper still alive
            self._process.wait()
            self._process = None
        if self._profile is not None:
            _remove_profile(Path(self._profile.name))
            self._profile.cleanup()  # the folder is gone by now (or left to the system's temp cleaning)
            self._profile = None

    def _wait_for_port(self, path: Path) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.executable} exited at start (code {self._process.returncode})")
            try:
                return int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                time.sleep(0.05)
        raise TimeoutError(f"{self.executable} did not open its DevTools port in 30 s")

    def _record(self, message: Dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        self._events.append(message)

    def send(self, method: str, params: Optional[Dict[str, Any]] = None, timeout_s: Optional[float] = None) -> Any:
        """Call a DevTools method and return its result (events that arrive meanwhile are recorded)."""
        self._next_id += 1
        call_id = self._next_id
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            message = json.loads(self._socket.recv(timeout=max(0.01, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise PageError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._record(message)

    def wait_for_event(self, method: str, timeout_s: Optional[float] = None) -> Dict[str, Any]:
        """Wait for the next event named ``method`` (one already recorded and not yet waited for counts)."""
        for index, message in enumerate(self._events):
            if message.get("method") == method:
                return self._events.pop(index)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            message = json.loads(self._socket.recv(timeout=max(0.01, deadline - time.monotonic())))
            self._record(message)
            if message.get("method") == method:
                return self._events.pop()

    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event (module scripts have run by then)."""
        self._events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str, timeout_s: Optional[float] = None) -> Any:
        """Value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout_s=timeout_s,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise PageError(f"{expression}: {details.get('exception', {}).get('description') or details.get('text')}")
        return result.get("result", {}).get("value")

    def screenshot(self) -> np.ndarray:
        """The page as shown now, ``[height, width, 3]`` uint8."""
        import imageio.v3 as iio

        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        return np.asarray(iio.imread(io.BytesIO(data), extension=".png"))[..., :3]
