"""``ds4d-export --web``: the clip as a folder that plays in a browser, with no network and no server of ours.

The folder (``web/`` in the export folder)::

    index.html              the player page (template in ``web_assets/``)
    viewer.js               its script: play / pause, time slider, orbit and zoom, ``?t=`` and ``?bg=``
    manifest.json           fps, frame times and files, Gaussian counts, bounds, the initial camera; written last
    frames/frame_0000.spz   one SPZ splat per frame (see ``ds4d_ns.exporting.spz``)
    vendor/                 the renderer: Spark (``@sparkjsdev/spark``) and three.js, copied unchanged from the
                            npm packages ``scripts/setup.sh`` installs, each with its LICENSE

Spark draws the splats (a WebGL2 Gaussian-splat renderer for three.js that reads SPZ); we write no
rasteriser of our own. The page loads its modules through an import map and fetches its frames,
which browsers allow only over http(s): any static file server will do (``python -m http.server``).
"""

from __future__ import annotations

import json
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ds4d_ns import camera_layouts
from ds4d_ns.data.dataset_format import TRANSFORMS_NAME
from ds4d_ns.errors import UserError
from ds4d_ns.exporting.manifest import frame_file_name
from ds4d_ns.exporting.splat_frame import SplatFrame
from ds4d_ns.exporting.spz import SPZ_VERSION, write_spz_atomic
from ds4d_ns.io.writers import write_bytes_atomic, write_json_atomic

WEB_FOLDER = "web"
"""The page's folder inside the export folder."""
FRAMES_FOLDER = "frames"
WEB_MANIFEST_NAME = "manifest.json"
WEB_FORMAT = "ds4d-web-clip"
"""``format`` of the page's ``manifest.json``."""
WEB_FORMAT_VERSION = 1

RENDERER_PACKAGES: Dict[str, str] = {"@sparkjsdev/spark": "2.2.0", "three": "0.180.0"}
"""The npm packages the page runs on, at the exact versions it was tested with (Spark 2.2.0 was built against
three 0.180). ``scripts/setup.sh`` installs these; change them together."""
RENDERER_ENV = "DS4D_WEB_RENDERER"
"""Environment variable naming another folder the renderer was npm-installed into (``npm install --prefix``)."""
DEFAULT_RENDERER_DIR = Path(__file__).resolve().parents[2] / "tools" / "web-renderer"
"""Where ``scripts/setup.sh`` installs the renderer (git-ignored), beside the project's source."""
VENDORED_FILES: Tuple[Tuple[str, str], ...] = (
    ("three/build/three.module.min.js", "vendor/three/three.module.min.js"),
    ("three/build/three.core.min.js", "vendor/three/three.core.min.js"),  # imported by three.module.min.js
    ("three/examples/jsm/controls/OrbitControls.js", "vendor/three/addons/controls/OrbitControls.js"),
    ("three/examples/jsm/postprocessing/Pass.js", "vendor/three/addons/postprocessing/Pass.js"),  # Spark imports it
    ("three/LICENSE", "vendor/three/LICENSE"),
    ("@sparkjsdev/spark/dist/spark.module.min.js", "vendor/spark/spark.module.min.js"),
    ("@sparkjsdev/spark/LICENSE", "vendor/spark/LICENSE"),
    ("fflate/LICENSE", "vendor/spark/fflate.LICENSE"),  # fflate (its gzip reader) is bundled into Spark's module
)
"""(file under the renderer's ``node_modules``, where it goes under ``web/``)."""
PAGE_FILES: Tuple[str, ...] = ("index.html", "viewer.js")
"""Our own page files, from ``ds4d_ns/exporting/web_assets``."""
DEFAULT_BACKGROUND = "#ffffff"
"""Page background: white, the background the models are trained and evaluated against."""


class WebRendererUnavailable(UserError):
    """``--web`` was asked for and the vendored renderer is not installed (or not at the pinned versions)."""


def renderer_dir() -> Path:
    """The ``node_modules`` folder the page's renderer is copied from: ``$DS4D_WEB_RENDERER`` or the set-up's."""
    root = Path(os.environ.get(RENDERER_ENV) or DEFAULT_RENDERER_DIR)
    return root / "node_modules"


def require_web_renderer() -> Path:
    """The renderer's ``node_modules`` folder, checked: every vendored file present, each package at its pin.

    Raises:
        WebRendererUnavailable: something is missing; the message says how to install it.
    """
    modules = renderer_dir()
    install = " ".join(f"{name}@{version}" for name, version in RENDERER_PACKAGES.items())
    how = (
        f"run `bash scripts/setup.sh`, or `npm install --prefix {modules.parent} {install}` (or set {RENDERER_ENV} "
        "to a folder where that was run)"
    )
    for name, version in RENDERER_PACKAGES.items():
        try:
            found = json.loads((modules / name / "package.json").read_text()).get("version")
        except (OSError, ValueError, AttributeError):
            raise WebRendererUnavailable(f"--web needs the npm package {name}@{version} in {modules}: {how}") from None
        if found != version:
            raise WebRendererUnavailable(
                f"--web needs {name}@{version} (the version the page is tested with); {modules} has {found}: {how}"
            )
    for source, _ in VENDORED_FILES:
        if not (modules / source).is_file():
            raise WebRendererUnavailable(f"--web: {modules / source} is missing: {how}")
    return modules


def web_frame_files(num_frames: int) -> List[str]:
    """Each frame's SPZ path relative to the export folder (``web/frames/frame_0000.spz`` ...)."""
    return [f"{WEB_FOLDER}/{FRAMES_FOLDER}/{frame_file_name(i, num_frames, 'spz')}" for i in range(num_frames)]


def web_file_names(num_frames: int) -> List[str]:
    """Every file ``--web`` writes, relative to the export folder (to check before the first write)."""
    others = [*PAGE_FILES, *(dest for _, dest in VENDORED_FILES), WEB_MANIFEST_NAME]
    return [*web_frame_files(num_frames), *(f"{WEB_FOLDER}/{rel}" for rel in others)]


def write_web_frame(out: Path, index: int, num_frames: int, frame: SplatFrame) -> None:
    """Write frame ``index`` of ``num_frames`` as the page's SPZ file under ``out`` (the export folder)."""
    write_spz_atomic(Path(out) / web_frame_files(num_frames)[index], frame)


def page_camera(dataset: Optional[Path], centre: Sequence[float], radius: float) -> Dict[str, Any]:
    """The page's initial camera: the dataset's input camera (view 0), else the standard front camera.

    Args:
        dataset: the run's dataset folder, if found.
        centre: centre of the clip's bounds; the orbit pivots on the point of the view axis nearest to it,
            so the first view is exactly the input camera's.
        radius: half the diagonal of the clip's bounds (sets the clipping planes).
    """
    c2w, fov_y, size, source = _input_camera(dataset)
    position, forward = c2w[:3, 3], -c2w[:3, 2]  # OpenGL: the camera looks down its -z
    target = position + forward * max(float(np.dot(np.asarray(centre) - position, forward)), 1e-3)
    distance = float(np.linalg.norm(np.asarray(centre) - position))
    return {
        "source": source,
        "camera_to_world": [[float(v) for v in row] for row in c2w],
        "convention": "OpenGL camera-to-world, rows; the camera looks down -z, +y up in the image",
        "fov_y_deg": fov_y,
        "width": size[0],
        "height": size[1],
        "up": [0.0, 0.0, 1.0],  # the world's up (ds4d_ns.camera_layouts): the orbit turns about it
        "target": [float(v) for v in target],
        "near": max(1e-3, 0.01 * distance),
        "far": 10.0 * (distance + radius) + 1.0,
    }


def _input_camera(dataset: Optional[Path]) -> Tuple[np.ndarray, float, Tuple[int, int], str]:
    """(4x4 camera-to-world, vertical fov in degrees, (width, height), where it came from)."""
    if dataset is not None:
        try:
            records = json.loads((dataset / TRANSFORMS_NAME).read_text())["frames"]
            inputs = [r for r in records if r.get("role", "input") == "input" and int(r.get("view_index", 0)) == 0]
            record = min(inputs, key=lambda r: abs(float(r.get("time", 0.5)) - 0.5))
            c2w = np.eye(4)
            c2w[:3, :4] = np.asarray(record["transform_matrix"], dtype=np.float64)[:3, :4]
            width, height, fl_y = int(record["w"]), int(record["h"]), float(record["fl_y"])
            if np.all(np.isfinite(c2w)) and width > 0 and height > 0 and fl_y > 0:
                fov_y = math.degrees(2.0 * math.atan(0.5 * height / fl_y))
                return c2w, fov_y, (width, height), f"{TRANSFORMS_NAME}: input view 0"
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            pass  # the dataparser's checks are not repeated here: the standard front camera will do
    view = camera_layouts.OrbitView(0.0, 0.0, camera_layouts.INPUT_RADIUS, camera_layouts.INPUT_FOVY_DEG)
    c2w = np.eye(4)
    c2w[:3, :4] = camera_layouts.orbit_c2w(view).double().numpy()
    return c2w, camera_layouts.INPUT_FOVY_DEG, (512, 512), "the standard front camera (no dataset found)"


def write_web_page(
    out: Path,
    renderer: Path,
    *,
    times: Sequence[float],
    num_gaussians: Sequence[int],
    bounds: Sequence[Tuple[np.ndarray, np.ndarray]],
    seconds: Sequence[float],
    fps: float,
    dataset: Optional[Path],
    source: Dict[str, Any],
    generator: Dict[str, str],
) -> Path:
    """Write the page around frames already written by :func:`write_web_frame`; returns ``web/index.html``.

    Args:
        out: the export folder (the page goes into its ``web/``).
        renderer: the renderer's ``node_modules`` (see :func:`require_web_renderer`), copied into ``web/vendor``.
        times, num_gaussians, bounds: each frame's time in [0, 1], Gaussian count and box of centres.
        seconds: each frame's moment in the clip in seconds (its playback schedule).
        fps: the clip's frame rate; after the last frame the page waits one frame interval and loops.
        dataset: the run's dataset folder, if found: its input camera is the page's first view.
        source, generator: where the frames came from and what wrote them (as in the sequence's manifest).

    ``manifest.json`` is written last, so a page folder holding one is complete.
    """
    web = Path(out) / WEB_FOLDER
    for source_rel, dest in VENDORED_FILES:
        write_bytes_atomic(web / dest, (renderer / source_rel).read_bytes())
    assets = resources.files("ds4d_ns.exporting") / "web_assets"
    for name in PAGE_FILES:
        write_bytes_atomic(web / name, (assets / name).read_bytes())
    frame_files = web_frame_files(len(times))
    sizes = [(Path(out) / rel).stat().st_size for rel in frame_files]
    low = np.min([np.asarray(b[0], dtype=np.float64) for b in bounds], axis=0)
    high = np.max([np.asarray(b[1], dtype=np.float64) for b in bounds], axis=0)
    centre, radius = (low + high) / 2, float(np.linalg.norm(high - low) / 2)
    manifest = {
        "format": WEB_FORMAT,
        "format_version": WEB_FORMAT_VERSION,
        "generator": generator,
        "source": source,
        "renderer": {name: version for name, version in RENDERER_PACKAGES.items()},
        "fps": float(fps),
        "duration_s": float(seconds[-1] - seconds[0]) if len(seconds) else 0.0,
        "frame_count": len(times),
        "background": DEFAULT_BACKGROUND,
        "camera": page_camera(dataset, centre, radius),
        "bounds": {"min": low.tolist(), "max": high.tolist()},
        "spz_version": SPZ_VERSION,
        "frame_bytes_total": int(sum(sizes)),
        "frames": [
            {
                "index": index,
                "time": float(times[index]),
                "seconds": float(seconds[index] - seconds[0]),
                "file": rel.split("/", 1)[1],  # relative to web/, where the page resolves it
                "num_gaussians": int(num_gaussians[index]),
                "bytes": size,
            }
            for index, (rel, size) in enumerate(zip(frame_files, sizes))
        ],
    }
    write_json_atomic(web / WEB_MANIFEST_NAME, manifest)
    return web / "index.html"
