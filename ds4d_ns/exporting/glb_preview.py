"""Look at an animated glb as three.js plays it: screenshots from headless Chromium at chosen animation times.

The page (``web_assets/glb_viewer.html``) loads the file with three.js's own ``GLTFLoader`` and plays it with
an ``AnimationMixer``, as any three.js app would, so a screenshot shows what the file holds rather than
what the exporter meant. :func:`stage_glb_viewer` lays the page out in a folder beside the glb and the
vendored three.js (from the npm package ``scripts/setup.sh`` installs for ``--web``); :func:`screenshot_glb`
serves that folder on 127.0.0.1 and screenshots it. ``ds4d-export`` does not write this page: it is for the
mesh export's test (``tests/test_export_mesh_browser.py``) and for pictures of a glb::

    python -m ds4d_ns.exporting.glb_preview OUT/mesh/animated.glb --seconds 0 1.2 2.4 --png shot.png

It needs Debian's ``chromium`` (see :mod:`ds4d_ns.exporting.headless_browser`).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ds4d_ns.exporting.headless_browser import HeadlessChromium, serve_folder
from ds4d_ns.exporting.web import renderer_dir, require_web_renderer

PAGE_NAME = "glb_viewer.html"
THREE_FILES = (
    ("three/build/three.module.min.js", "vendor/three/three.module.min.js"),
    ("three/build/three.core.min.js", "vendor/three/three.core.min.js"),  # imported by three.module.min.js
    ("three/examples/jsm/loaders/GLTFLoader.js", "vendor/three/addons/loaders/GLTFLoader.js"),
    ("three/examples/jsm/utils/BufferGeometryUtils.js", "vendor/three/addons/utils/BufferGeometryUtils.js"),
    ("three/examples/jsm/controls/OrbitControls.js", "vendor/three/addons/controls/OrbitControls.js"),
    ("three/LICENSE", "vendor/three/LICENSE"),
)
"""(file under the renderer's ``node_modules``, where it goes beside the page): what the page imports."""


def stage_glb_viewer(glb: Path, folder: Path) -> str:
    """Copy the page, the three.js files it imports and ``glb`` into ``folder``; returns the glb's name there.

    Raises:
        WebRendererUnavailable: three.js is not installed at its pinned version (the message says how).
    """
    require_web_renderer()  # the pinned three.js (and Spark, installed with it) or a message saying how
    modules = renderer_dir()
    folder = Path(folder)
    page = resources.files("ds4d_ns.exporting").joinpath("web_assets", PAGE_NAME)
    (folder / PAGE_NAME).write_bytes(page.read_bytes())
    for source, dest in THREE_FILES:
        (folder / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(modules / source, folder / dest)
    shutil.copyfile(glb, folder / Path(glb).name)
    return Path(glb).name


@dataclass
class GlbShots:
    """What :func:`screenshot_glb` saw."""

    images: List[np.ndarray]
    """One ``[height, width, 3]`` uint8 screenshot per requested time."""
    cameras: List[Dict[str, Any]]
    """The page's camera at each (``matrixWorld``: column-major camera to glTF world; ``fovYDeg``, size)."""
    node_matrix: np.ndarray
    """The mesh node's 4x4 local-to-world matrix (the file's coordinates to glTF's world)."""
    clips: int
    duration_s: float
    morph_targets: int
    errors: List[str] = field(default_factory=list)
    """Console errors, exceptions and failed loads the page reported."""


def screenshot_glb(
    glb: Path,
    seconds: Sequence[float],
    width: int = 320,
    height: int = 240,
    background: str = "ffffff",
    elevation_deg: float = 15.0,
    zoom: float = 1.0,
    settle_frames: int = 3,
    executable: Optional[str] = None,
) -> GlbShots:
    """Screenshots of ``glb`` in three.js, paused at each of ``seconds`` (the page opened afresh for each)."""
    images, cameras = [], []
    with tempfile.TemporaryDirectory(prefix="ds4d-glb-") as staged:
        name = stage_glb_viewer(Path(glb), Path(staged))
        with serve_folder(Path(staged)) as base, HeadlessChromium(width, height, executable) as browser:
            for time in seconds:
                browser.open(f"{base}{PAGE_NAME}?glb={name}&t={time}&bg={background}&el={elevation_deg}&zoom={zoom}")
                # ready resolves once the paused frame has been drawn; a few more let the compositor catch up
                browser.evaluate(f"window.glbViewer.ready.then(() => window.glbViewer.afterFrames({settle_frames}))")
                images.append(browser.screenshot())
                cameras.append(browser.evaluate("window.glbViewer.camera()"))
            loaded = browser.evaluate(
                "({node: window.glbViewer.nodeMatrixWorld(), clips: window.glbViewer.clips, "
                "duration: window.glbViewer.duration, targets: window.glbViewer.morphTargets})"
            )
            errors = list(browser.errors)
    return GlbShots(
        images=images,
        cameras=cameras,
        node_matrix=np.asarray(loaded["node"], np.float64).reshape(4, 4).T,  # three.js: column-major
        clips=int(loaded["clips"]),
        duration_s=float(loaded["duration"]),
        morph_targets=int(loaded["targets"]),
        errors=errors,
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Write screenshots of a glb at the given times side by side in one PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("glb", type=Path)
    parser.add_argument("--png", type=Path, required=True, help="where the picture goes")
    parser.add_argument("--seconds", type=float, nargs="+", default=[0.0], help="animation times, one shot each")
    parser.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--bg", default="ffffff", help="background colour, hex RRGGBB")
    parser.add_argument("--elevation", type=float, default=15.0, help="camera elevation in degrees")
    parser.add_argument("--zoom", type=float, default=1.0, help="closer than the framing of the whole clip")
    args = parser.parse_args(argv)
    width, height = args.size
    shots = screenshot_glb(
        args.glb, args.seconds, width, height, background=args.bg, elevation_deg=args.elevation, zoom=args.zoom
    )
    if shots.errors:
        raise SystemExit(f"the page reported errors: {shots.errors}")
    import imageio.v3 as iio

    args.png.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.png, np.concatenate(shots.images, axis=1), extension=".png", optimize=True)
    from nerfstudio.utils.rich_utils import CONSOLE
    from rich.markup import escape

    CONSOLE.log(escape(f"{args.png}: {len(shots.images)} shots of {args.glb} ({shots.morph_targets} morph targets)"))


if __name__ == "__main__":
    main()
