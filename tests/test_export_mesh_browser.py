"""``ds4d-export --mesh``'s glb plays in a real viewer: three.js in headless Chromium.

The run is ``test_export_mesh.py``'s: a ds4d-cpu checkpoint of an ellipsoid shell of Gaussians coloured by
height (blue at the bottom, red at the top) whose deformation field is replaced by a known rigid motion
(a turn about the vertical axis and a slide along x). The glb is opened with three.js's own GLTFLoader
and AnimationMixer (``ds4d_ns/exporting/glb_preview.py``), served from 127.0.0.1, at the first and the
last frame's time. What the page shows is compared with the PLY frames of the same export, projected
through the camera the page reports. Needs Debian's ``chromium`` and the vendored three.js
(``scripts/setup.sh`` installs both); skipped, with the reason, without them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

# the run and its known motion (pytest finds fixtures by name in this module's namespace)
from test_export_mesh import NUM_TIMES, _ply_frame, ellipsoid_run, rigid_field  # noqa: F401

from ds4d_ns.errors import UserError
from ds4d_ns.evaluation.mesh_fidelity import rasterize_mesh
from ds4d_ns.exporting.glb_preview import screenshot_glb
from ds4d_ns.exporting.headless_browser import find_chromium
from ds4d_ns.exporting.web import require_web_renderer
from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat
from ds4d_ns.scripts.export import ExportGaussianSequence, export_sequence

WIDTH, HEIGHT = 200, 150
BACKGROUND = "000000"
"""Black: every colour of the shell (each has a channel of at least 0.2) stands out from it."""


def _three_ready() -> bool:
    try:
        require_web_renderer()
    except UserError:
        return False
    return True


needs_three = pytest.mark.skipif(
    not _three_ready(), reason="the vendored three.js is not installed (bash scripts/setup.sh)"
)
needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="no chromium to open the glb in (bash scripts/setup.sh installs it)"
)


def _covered(image: np.ndarray) -> np.ndarray:
    """Pixels of a black-background screenshot that show the mesh."""
    return image.max(axis=-1) > 24


def _expected_silhouette(ply: Path, camera: dict, node_matrix: np.ndarray) -> np.ndarray:
    """Where the PLY frame (the scene's coordinates) lies in the page's view: the page's camera is in glTF's
    world, which the glb's node matrix maps the scene's coordinates into."""
    vertices, faces, _ = _ply_frame(ply)
    camera_to_gltf = np.asarray(camera["matrixWorld"], np.float64).reshape(4, 4).T  # three.js: column-major
    camera_to_scene = np.linalg.inv(node_matrix) @ camera_to_gltf
    viewmat = opengl_c2w_to_opencv_viewmat(torch.as_tensor(camera_to_scene[None, :3, :4], dtype=torch.float32))[0]
    width, height = camera["width"], camera["height"]
    focal = 0.5 * height / math.tan(math.radians(camera["fovYDeg"]) / 2)  # square pixels
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=torch.float32)
    return rasterize_mesh(torch.from_numpy(vertices), torch.from_numpy(faces), viewmat, K, width, height)[
        "mask"
    ].numpy()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@needs_three
@needs_chromium
def test_three_js_plays_the_exported_glb_moving_where_the_clip_moves_and_only_there(
    ellipsoid_run,  # noqa: F811 (the fixture imported above)
    rigid_field,  # noqa: F811
    tmp_path,
):
    out = tmp_path / "export"
    export_sequence(
        ExportGaussianSequence(
            load_config=ellipsoid_run,
            output_dir=out,
            num_times=NUM_TIMES,
            mesh=True,
            mesh_resolution=48,
            mesh_faces=3000,
            fps=10.0,
        )
    )
    frames = json.loads((out / "mesh" / "manifest.json").read_text())["frames"]
    first, last = frames[0], frames[-1]
    shots = screenshot_glb(
        out / "mesh" / "animated.glb", [first["seconds"], last["seconds"]], WIDTH, HEIGHT, background=BACKGROUND
    )
    assert shots.errors == [], shots.errors
    assert shots.clips == 1 and shots.morph_targets == NUM_TIMES
    assert shots.duration_s == pytest.approx(last["seconds"])
    start, end = shots.images
    assert start.shape == (HEIGHT, WIDTH, 3)

    # not blank: the mesh covers a sensible share of the view at both times
    shown = [_covered(start), _covered(end)]
    for mask in shown:
        assert 0.05 < mask.mean() < 0.7, f"the mesh covers {mask.mean():.1%} of the view"

    # the clip plays: the first and last frames' shots differ (a glb without its animation shows one pose at both)
    changed = np.abs(start.astype(np.int16) - end.astype(np.int16)).max(axis=-1) > 48
    assert changed.mean() > 0.02, f"the shots at {first['seconds']} s and {last['seconds']} s barely differ"

    # upright and facing the viewer: the shell is red at the top and blue at the bottom, and three.js shows it so
    rows = np.nonzero(shown[0].any(axis=1))[0]
    top, bottom = rows[: len(rows) // 4], rows[-(len(rows) // 4) :]
    redness = start[..., 0].astype(np.float32) - start[..., 2]
    assert redness[top][shown[0][top]].mean() > 40, "the top of the view is not the shell's red top"
    assert redness[bottom][shown[0][bottom]].mean() < -40, "the bottom of the view is not the shell's blue bottom"

    # each shot is the PLY frame of its time, seen through the page's camera
    expected = [
        _expected_silhouette(out / "mesh" / frame["file_path"], camera, shots.node_matrix)
        for frame, camera in zip((first, last), shots.cameras)
    ]
    ious = [_iou(page, ours) for page, ours in zip(shown, expected)]
    print(f"silhouette IoU, three.js against the PLY frames: {np.round(ious, 3).tolist()}")
    assert min(ious) > 0.9

    # they differ where the clip moves (the silhouettes of the two frames differ) and, since the turn
    # about the vertical axis keeps every point's height and so its colour, nowhere else
    moving = expected[0] ^ expected[1]
    near_moving = ndimage.binary_dilation(moving, iterations=2)
    core = ndimage.binary_erosion(moving, iterations=2)  # the moving region away from its anti-aliased edges
    print(
        f"changed {changed.mean():.1%} of the pixels; {changed[near_moving].sum() / max(1, changed.sum()):.1%} "
        f"of them where the silhouettes differ, which they cover {changed[core].mean():.1%} of"
    )
    assert changed[core].mean() > 0.9
    assert changed[near_moving].sum() >= 0.95 * changed.sum()
