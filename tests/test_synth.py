"""Tests of ``ds4d-synth``: dataset layout, camera convention, motion, point cloud, safety.

Every dataset here is tiny (4 frames at 64 px), a second or two on a CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import tyro
from plyfile import PlyData

from ds4d_ns import camera_layouts
from ds4d_ns.data.dataset_format import REQUIRED_FRAME_KEYS, TRANSFORMS_NAME
from ds4d_ns.scripts.synth import SynthConfig, main
from ds4d_ns.synth.generate import degrade_pseudo, render_views
from ds4d_ns.synth.scenes import SCENES, get_scene

FRAMES = 4
RESOLUTION = 64
VIEWS_PER_FRAME = 1 + 6 + 4


def make(out: Path, **overrides) -> Path:
    settings = {"frames": FRAMES, "resolution": RESOLUTION, "seed": 3, "num_points": 2000, **overrides}
    return main(SynthConfig(output=out, **settings))


def load_transforms(root: Path) -> Dict:
    return json.loads((root / TRANSFORMS_NAME).read_text())


def read_image(root: Path, frame: Dict) -> np.ndarray:
    return iio.imread(root / frame["file_path"])


def find_frame(meta: Dict, role: str, view_index: int, frame_index: int) -> Dict:
    (frame,) = [
        f
        for f in meta["frames"]
        if f["role"] == role and f["view_index"] == view_index and f["frame_index"] == frame_index
    ]
    return frame


def file_bytes(root: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def project(points: np.ndarray, frame: Dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel (column, row) of world points through a frame's OpenGL camera, and whether in front."""
    c2w = np.asarray(frame["transform_matrix"])
    cam = (points - c2w[:3, 3]) @ c2w[:3, :3]  # R^T (x - C), row-wise
    depth = -cam[:, 2]  # OpenGL: the camera looks down -z
    u = frame["cx"] + frame["fl_x"] * cam[:, 0] / depth
    v = frame["cy"] - frame["fl_y"] * cam[:, 1] / depth  # image rows grow downwards, camera y up
    return np.floor(u).astype(int), np.floor(v).astype(int), depth > 0


def fraction_on_object(alpha: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> float:
    """Fraction of pixels that are opaque, allowing one pixel of slack for points on the silhouette."""
    opaque = alpha > 127
    dilated = opaque.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            dilated |= np.roll(np.roll(opaque, dy, axis=0), dx, axis=1)
    inside = (cols >= 0) & (cols < alpha.shape[1]) & (rows >= 0) & (rows < alpha.shape[0])
    hits = np.zeros(len(cols), dtype=bool)
    hits[inside] = dilated[rows[inside], cols[inside]]
    return float(hits.mean())


@pytest.fixture(scope="module", params=sorted(SCENES))
def dataset(request, tmp_path_factory) -> Path:
    """A clean dataset of every registered scene."""
    out = tmp_path_factory.mktemp(f"synth_{request.param}") / "data"
    make(out, scene=request.param)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A clean windmill dataset that other runs are compared with (never modified)."""
    out = tmp_path_factory.mktemp("synth_reference") / "data"
    make(out, scene="windmill")
    return out


@pytest.mark.parametrize("name", sorted(SCENES))
def test_scenes_are_static_dominant_and_bounded(name: str) -> None:
    scene = get_scene(name)
    times = [0.0, 0.25, 0.5, 0.75, 1.0]
    moving = [part for part in scene.parts if part.moving]
    assert moving and len(moving) < len(scene.parts)
    for part in scene.parts:
        rot0, offset0 = part.pose(0.0)
        rot1, offset1 = part.pose(1.0)
        changed = not (torch.equal(rot0, rot1) and torch.equal(offset0, offset1))
        assert changed == part.moving, part.name
    # The moving parts are a minority of the object's volume at every time (Monte Carlo estimate).
    generator = torch.Generator().manual_seed(0)
    samples = (torch.rand(200_000, 3, generator=generator) * 2.0 - 1.0) * scene.bound_radius
    is_moving = torch.tensor([part.moving for part in scene.parts])
    for t in times:
        per_part = scene.part_distances(samples, t)
        inside = per_part.min(dim=0).values < 0.0
        share = is_moving[per_part.argmin(dim=0)][inside].float().mean().item()
        assert 0.005 < share < 0.3, (t, share)
        # Nothing reaches the bounding sphere, where rays start marching.
        directions = torch.nn.functional.normalize(torch.randn(5000, 3, generator=generator), dim=-1)
        assert scene.distance(directions * scene.bound_radius, t).min() > 0.05


def test_transforms_lists_every_view_of_every_frame(dataset: Path) -> None:
    meta = load_transforms(dataset)
    frames = meta["frames"]
    assert len(frames) == FRAMES * VIEWS_PER_FRAME
    assert meta["ply_file_path"] == "init.ply"
    assert meta["generator"] == "ds4d-synth" and meta["scene"] in SCENES and meta["seed"] == 3
    expected = {
        "input": (camera_layouts.input_view(),),
        "pseudo": camera_layouts.zero123pp_v12_views(),
        "eval": camera_layouts.consistent4d_eval_views(),
    }
    seen = set()
    for frame in frames:
        assert set(REQUIRED_FRAME_KEYS) <= set(frame)
        assert 0.0 <= frame["time"] <= 1.0
        assert frame["time"] == pytest.approx(frame["frame_index"] / (FRAMES - 1))
        assert frame["w"] == frame["h"] == RESOLUTION and frame["cx"] == frame["cy"] == RESOLUTION / 2
        orbit = expected[frame["role"]][frame["view_index"]]
        assert frame["fl_x"] == frame["fl_y"] == pytest.approx(camera_layouts.focal_from_fov(orbit.fov_deg, RESOLUTION))
        np.testing.assert_allclose(
            np.asarray(frame["transform_matrix"])[:3], camera_layouts.orbit_c2w(orbit).numpy(), atol=1e-6
        )
        assert (dataset / frame["file_path"]).is_file()
        seen.add((frame["role"], frame["view_index"], frame["frame_index"]))
    assert len(seen) == len(frames)
    roles = [frame["role"] for frame in frames]
    assert (roles.count("input"), roles.count("pseudo"), roles.count("eval")) == (FRAMES, 6 * FRAMES, 4 * FRAMES)


def test_images_are_rgba_with_a_framed_object(dataset: Path) -> None:
    meta = load_transforms(dataset)
    for frame in meta["frames"]:
        image = read_image(dataset, frame)
        assert image.shape == (RESOLUTION, RESOLUTION, 4) and image.dtype == np.uint8
        alpha = image[..., 3]
        # Transparent border: the object is framed, not cut off by the image edge.
        assert alpha[0].max() == alpha[-1].max() == alpha[:, 0].max() == alpha[:, -1].max() == 0
        coverage = (alpha > 127).mean()
        if frame["role"] == "input":
            assert 0.08 < coverage < 0.6, coverage
        else:
            assert 0.04 < coverage < 0.7, coverage
    # The silhouette is anti-aliased: some pixels are partially covered.
    alpha = read_image(dataset, find_frame(meta, "input", 0, 0))[..., 3]
    assert ((alpha > 0) & (alpha < 255)).sum() > 10


def test_moving_part_moves_and_the_rest_stays(dataset: Path) -> None:
    meta = load_transforms(dataset)
    first = read_image(dataset, find_frame(meta, "input", 0, 0)).astype(int)
    last = read_image(dataset, find_frame(meta, "input", 0, FRAMES - 1)).astype(int)
    difference = np.abs(first - last).max(axis=-1)
    either = (first[..., 3] > 127) | (last[..., 3] > 127)
    both = (first[..., 3] > 127) & (last[..., 3] > 127)
    moved = (difference > 40) & either
    unchanged = (difference <= 2) & both
    # Both frames' moving-part footprints count as "either", so the static share is well below its
    # per-frame share; 0.45 still fails if anything static moves or flickers.
    assert moved.sum() >= 0.05 * either.sum(), "the moving part barely moves"
    assert unchanged.sum() >= 0.45 * either.sum(), "the static part of the object changed"


def test_views_follow_the_camera_convention(dataset: Path) -> None:
    """Surface points, projected with each frame's JSON camera, land on the object in every view."""
    meta = load_transforms(dataset)
    ply = PlyData.read(str(dataset / meta["ply_file_path"]))["vertex"]
    points = np.stack([ply["x"], ply["y"], ply["z"]], axis=-1).astype(np.float64)
    upside_down: List[float] = []
    for frame in meta["frames"]:
        if frame["frame_index"] != meta["ply_frame_index"]:
            continue
        alpha = read_image(dataset, frame)[..., 3]
        cols, rows, in_front = project(points, frame)
        assert in_front.all()
        assert fraction_on_object(alpha, cols, rows) > 0.97, (frame["role"], frame["view_index"])
        upside_down.append(fraction_on_object(alpha, cols, RESOLUTION - 1 - rows))
    # Control: the check can tell a flipped image axis apart (the objects are not symmetric).
    assert len(upside_down) == VIEWS_PER_FRAME and min(upside_down) < 0.9


def test_init_ply_samples_the_surface(dataset: Path) -> None:
    meta = load_transforms(dataset)
    vertex = PlyData.read(str(dataset / "init.ply"))["vertex"]
    assert len(vertex) == 2000
    names = vertex.data.dtype.names
    assert {"x", "y", "z", "red", "green", "blue"} <= set(names)
    assert all(vertex.data.dtype[c] == np.uint8 for c in ("red", "green", "blue"))
    colours = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=-1).astype(float)
    assert colours.std(axis=0).mean() > 10, "points should carry the textured surface colour"
    points = torch.tensor(np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=-1), dtype=torch.float32)
    sdf = get_scene(meta["scene"]).distance(points, meta["ply_time"]).abs()
    # Default position noise is 0.01, whose mean distance along the normal is about 0.008.
    assert 0.002 < sdf.mean().item() < 0.02
    assert points.norm(dim=-1).max() < 0.8


def test_pseudo_noise_degrades_only_pseudo_views(reference: Path, tmp_path: Path) -> None:
    make(tmp_path / "noisy", scene="windmill", pseudo_noise=1.0)
    clean, noisy = load_transforms(reference), load_transforms(tmp_path / "noisy")
    assert noisy["pseudo_noise"] == 1.0
    for frame in clean["frames"]:
        a = read_image(reference, frame).astype(int)
        b = read_image(tmp_path / "noisy", frame).astype(int)
        if frame["role"] == "pseudo":
            assert np.abs(a - b).mean() > 1.0, frame["file_path"]
        else:
            assert np.array_equal(a, b), frame["file_path"]


def test_degrade_pseudo_is_seeded_per_view_and_frame() -> None:
    image = render_views(get_scene("waving"), 0.5, [camera_layouts.zero123pp_v12_views()[0]], RESOLUTION, steps=64)[0]
    assert degrade_pseudo(image, 0.0, 1, 0, 0) is image
    base = degrade_pseudo(image, 1.0, 1, 0, 0)
    assert torch.equal(base, degrade_pseudo(image, 1.0, 1, 0, 0))
    assert not torch.allclose(base, degrade_pseudo(image, 1.0, 1, 0, 1), atol=1e-3), "no frame-to-frame jitter"
    assert not torch.allclose(base, degrade_pseudo(image, 1.0, 2, 0, 0), atol=1e-3), "seed ignored"
    # Alpha goes through the blur as well: more partially covered pixels than the clean render.
    partial = lambda a: ((a > 0.02) & (a < 0.98)).sum()  # noqa: E731
    assert partial(base[..., 3]) > 1.5 * partial(image[..., 3])


def test_same_seed_gives_identical_bytes(reference: Path, tmp_path: Path) -> None:
    make(tmp_path / "again", scene="windmill")
    first, second = file_bytes(reference), file_bytes(tmp_path / "again")
    assert len(first) == FRAMES * VIEWS_PER_FRAME + 3  # images, transforms.json, init.ply, manifest
    assert first == second


def test_refuses_a_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        make(out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    make(out, force=True)
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / TRANSFORMS_NAME).is_file()


def test_refuses_an_output_of_other_settings(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    before = file_bytes(out)
    with pytest.raises(FileExistsError, match="different settings"):
        make(out, scene="windmill", seed=4)
    assert file_bytes(out) == before


def test_resumes_an_interrupted_run(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    meta = load_transforms(reference)
    removed = [meta["frames"][i]["file_path"] for i in (0, 13, 40)] + [TRANSFORMS_NAME, "init.ply"]
    for name in removed:
        (out / name).unlink()
    kept = meta["frames"][5]["file_path"]
    inode = (out / kept).stat().st_ino
    make(out, scene="windmill")
    assert file_bytes(out) == file_bytes(reference)
    # Images already on disk are skipped, not rewritten (an atomic rewrite would change the inode).
    assert (out / kept).stat().st_ino == inode


def test_cli_parses_the_documented_flags(tmp_path: Path) -> None:
    args = [str(tmp_path / "x"), "--scene", "waving", "--frames", "5", "--resolution", "32", "--seed", "7"]
    config = tyro.cli(SynthConfig, args=args + ["--pseudo-noise", "0.5", "--force"])
    assert config == SynthConfig(
        output=tmp_path / "x", scene="waving", frames=5, resolution=32, seed=7, pseudo_noise=0.5, force=True
    )
    with pytest.raises(ValueError, match="unknown scene"):
        main(SynthConfig(output=tmp_path / "y", scene="no-such-scene"))
    assert not (tmp_path / "y").exists()
