"""``ds4d-export --mesh``: an animated, vertex-coloured mesh of the Gaussians, as glTF and a PLY sequence.

The maths is tested on known shapes (Gaussians on a sphere), the glb is read back with pygltflib
and checked by the Khronos validator (npm gltf-validator, installed by scripts/setup.sh), and the
command runs on a ds4d-cpu checkpoint of known Gaussians (an ellipsoid shell coloured by height)
whose deformation field is replaced by a known rigid motion, so silhouette, colour and motion can be
measured against the Gaussian renders of the same model.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
import torch
from conftest import refused_export, save_run_checkpoint, tiny_cpu_run
from plyfile import PlyData

from ds4d_ns import camera_layouts
from ds4d_ns.errors import UserError
from ds4d_ns.evaluation.mesh_fidelity import motion_distance, psnr, rasterize_mesh, silhouette_iou
from ds4d_ns.exporting import mesh as mesh_maths
from ds4d_ns.exporting.gltf import animated_glb, linear_to_srgb
from ds4d_ns.fields.deformation import DeformationField, DeformedGaussians
from ds4d_ns.rendering.camera_matrices import intrinsics_and_size, opengl_c2w_to_opencv_viewmat
from ds4d_ns.rendering.orbit_cameras import orbit_cameras
from ds4d_ns.scripts import export
from ds4d_ns.scripts.export import ExportGaussianSequence, export_sequence

REPO = Path(__file__).resolve().parents[1]
VALIDATE = REPO / "scripts" / "gltf_validate.cjs"
NUM_TIMES = 5
SEMI_AXES = np.array([0.4, 0.2, 0.25])
"""The ellipsoid shell the run's Gaussians lie on."""
SIGMA = 0.03
"""The (isotropic) scale of the unit tests' Gaussians."""
RUN_SIGMA = 0.015
"""The scale of the run's Gaussians (a thin shell: the mesh lies within about 2 sigma of their centres)."""


# ------------------------------------------------------------------ pure maths on known shapes
def _sphere_gaussians(
    n: int = 4000, radius: float = 0.5, sigma: float = SIGMA, opacity: float = 0.9, seed: int = 0
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Isotropic Gaussians on a sphere: ``(means, quats, log_scales, opacities)``."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1) * radius
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)
    return means, quats, torch.full((n, 3), math.log(sigma)), torch.full((n,), opacity)


def test_gaussians_on_a_sphere_give_one_closed_outward_mesh_at_the_predicted_radius():
    n, radius, opacity = 4000, 0.5, 0.9
    mesh, grid = mesh_maths.mesh_from_gaussians(*_sphere_gaussians(n, radius), resolution=64, max_faces=3000)
    # a shell of n Gaussians has density n / (4 pi r^2) * 2 pi sigma^2 * o * exp(-x^2 / (2 sigma^2)) at a distance x:
    # the 0.5 level lies at x = sigma * sqrt(2 ln(peak / 0.5))
    peak = n / (4 * math.pi * radius**2) * 2 * math.pi * SIGMA**2 * opacity
    expected = radius + SIGMA * math.sqrt(2 * math.log(peak / mesh_maths.DENSITY_LEVEL))
    distances = np.linalg.norm(mesh.vertices, axis=-1)
    assert abs(distances.mean() - expected) < 0.5 * grid.voxel, (distances.mean(), expected)
    assert distances.std() < 0.5 * grid.voxel
    assert mesh.num_faces <= 3000
    # one closed surface (no inner shell: the hollow inside is filled), wound counter-clockwise from outside
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    volume = np.einsum("fi,fi->f", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6
    assert volume == pytest.approx(4 / 3 * math.pi * distances.mean() ** 3, rel=0.03)
    normals = mesh_maths.vertex_normals(mesh.vertices, mesh.faces)
    assert np.all(np.einsum("vi,vi->v", normals, mesh.vertices) > 0)
    edges = np.sort(mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2)  # every edge between exactly two faces: closed and manifold


def test_a_floater_far_from_the_object_is_dropped_and_a_faint_gaussian_adds_no_surface():
    means, quats, scales, opacities = _sphere_gaussians(2000, 0.3)
    means = torch.cat([means, torch.tensor([[0.9, 0.9, 0.9], [-0.9, 0.9, -0.9]])])
    quats = torch.cat([quats, quats[:2]])
    scales = torch.cat([scales, torch.full((2, 3), math.log(0.05))])
    opacities = torch.cat([opacities, torch.tensor([0.95, 0.2])])  # an opaque floater and a faint one
    mesh, _ = mesh_maths.mesh_from_gaussians(means, quats, scales, opacities, resolution=64, max_faces=100000)
    assert np.linalg.norm(mesh.vertices, axis=-1).max() < 0.45


def test_vertex_colours_come_from_the_views_where_the_vertex_is_seen():
    vertices = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)  # the second hides behind the first
    normals = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]], np.float32)
    viewmat = np.eye(4)[None]
    viewmat[0, 2, 3] = 2.0  # camera 2 units in front, looking down +z
    K = np.array([[[10.0, 0, 2], [0, 10.0, 2], [0, 0, 1]]])
    image = np.zeros((1, 4, 4, 3))
    image[0, 2, 2] = (1.0, 0.5, 0.0)
    alphas, depths = np.ones((1, 4, 4)), np.full((1, 4, 4), 2.0)
    views = mesh_maths.RenderedViews(image, alphas, depths, viewmat, K)
    colours, seen = mesh_maths.vertex_colours_from_views(vertices, normals, views, 0.1)
    np.testing.assert_allclose(colours[0], (1.0, 0.5, 0.0))
    assert seen.tolist() == [1, 0]  # occluded: it takes the nearest seen vertex's colour
    np.testing.assert_allclose(colours[1], colours[0])


def test_the_mesh_rasteriser_covers_what_pillow_fills(tmp_path):
    from PIL import Image, ImageDraw
    from scipy import ndimage

    rng = np.random.default_rng(3)
    size = 192
    K = torch.tensor([[160.0, 0, size / 2], [0, 160.0, size / 2], [0, 0, 1]])
    viewmat = torch.eye(4)
    # three overlapping triangles, none with a sharp corner (Pillow fills a sharp tip's pixel regardless)
    angles = np.radians([90, 210, 330])
    corners = [
        0.3 * np.c_[np.cos(angles + turn), np.sin(angles + turn)] + centre
        for turn, centre in ((0.0, (-0.1, 0.0)), (0.5, (0.15, 0.1)), (1.2, (0.05, -0.2)))
    ]
    depth = rng.uniform(1.5, 2.5, (9, 1))
    vertices = torch.tensor(np.c_[np.concatenate(corners) * depth, depth], dtype=torch.float32)
    faces = torch.arange(9).view(3, 3)
    out = rasterize_mesh(vertices, faces, viewmat, K, size, size)
    picture = Image.new("L", (size, size))
    draw = ImageDraw.Draw(picture)
    pixels = (vertices @ K.T)[:, :2] / vertices[:, 2:]
    for face in faces.tolist():  # Pillow's pixel (i, j) has its centre at (i + 0.5, j + 0.5) in ours
        draw.polygon([tuple((pixels[k] - 0.5).tolist()) for k in face], fill=255)
    filled = np.array(picture) > 0
    mask = out["mask"].numpy()
    # Pillow fills every pixel its outline touches (a corner's pixel too): ours lie within one pixel of its
    # fill, and its fill within two of ours
    assert mask.sum() > 500 and (mask != filled).sum() < 0.2 * mask.sum()
    assert np.all(ndimage.binary_dilation(filled, np.ones((3, 3), bool))[mask])
    assert np.all(ndimage.binary_dilation(mask, np.ones((5, 5), bool))[filled])


# ------------------------------------------------------------------ glTF
def _glb_and_frames(tmp_path: Path):
    mesh, _ = mesh_maths.mesh_from_gaussians(*_sphere_gaussians(1500, 0.4), resolution=32, max_faces=800)
    frames = np.stack([mesh.vertices * (1 + 0.1 * k) + np.float32(0.05 * k) for k in range(4)])
    normals = mesh_maths.vertex_normals(mesh.vertices, mesh.faces)
    colours = np.clip(mesh.vertices * 0.8 + 0.5, 0, 1).astype(np.float32)
    seconds = [k / 12 for k in range(4)]
    data = animated_glb(mesh.vertices, mesh.faces, frames, seconds, colours, normals, np.stack([normals] * 4), 2)
    path = tmp_path / "clip.glb"
    path.write_bytes(data)
    return path, mesh, frames, colours, seconds


def _accessor(gltf, data: bytes, index: int) -> np.ndarray:
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    dtype = {5126: np.float32, 5125: np.uint32, 5121: np.uint8}[accessor.componentType]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[accessor.type]
    start = view.byteOffset + (accessor.byteOffset or 0)
    return np.frombuffer(data, dtype, accessor.count * width, start).reshape(accessor.count, width)


def test_glb_frame_k_is_the_base_plus_target_k_and_the_animation_turns_on_only_target_k(tmp_path):
    import pygltflib

    path, mesh, frames, colours, seconds = _glb_and_frames(tmp_path)
    gltf = pygltflib.GLTF2().load(str(path))
    data = gltf.binary_blob()
    primitive = gltf.meshes[0].primitives[0]
    base = _accessor(gltf, data, primitive.attributes.POSITION)
    np.testing.assert_array_equal(base, mesh.vertices)
    np.testing.assert_array_equal(_accessor(gltf, data, primitive.indices).reshape(-1, 3), mesh.faces)
    assert len(primitive.targets) == 4
    sampler = gltf.animations[0].samplers[0]
    assert gltf.animations[0].channels[0].target.path == "weights" and sampler.interpolation == "LINEAR"
    keys = _accessor(gltf, data, sampler.input)[:, 0]
    np.testing.assert_allclose(keys, seconds, atol=1e-6)
    weights = _accessor(gltf, data, sampler.output).reshape(4, 4)
    for k in range(4):
        shown = base + sum(w * _accessor(gltf, data, t["POSITION"]) for w, t in zip(weights[k], primitive.targets))
        np.testing.assert_allclose(shown, frames[k], atol=1e-5)
    assert gltf.meshes[0].weights == [0.0, 0.0, 1.0, 0.0]  # at rest: the default (middle) frame
    # the scene's z up becomes glTF's y up (three.js shows it upright: tests/test_export_mesh_browser.py)
    assert gltf.nodes[0].rotation == pytest.approx([-math.sqrt(0.5), 0.0, 0.0, math.sqrt(0.5)])
    stored = _accessor(gltf, data, primitive.attributes.COLOR_0)[:, :3] / 255.0
    np.testing.assert_allclose(linear_to_srgb(stored), colours, atol=0.02)  # linear in the file, sRGB given


def _validate(path: Path) -> dict:
    if shutil.which("node") is None:
        pytest.fail("node is not installed; scripts/setup.sh expects it (CI has it)")
    done = subprocess.run(["node", str(VALIDATE), str(path)], capture_output=True, text=True, timeout=120)
    if done.returncode == 2:
        pytest.fail(f"the glTF validator did not run: {done.stderr.strip()} (run bash scripts/setup.sh)")
    return json.loads(done.stdout)


def test_the_khronos_validator_finds_no_error_in_the_glb_and_finds_them_in_a_broken_one(tmp_path):
    path, *_ = _glb_and_frames(tmp_path)
    report = _validate(path)
    print(
        f"gltf-validator {report['validatorVersion']}: {report['issues']['numErrors']} errors, "
        f"{report['issues']['numWarnings']} warnings"
    )
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    assert report["info"]["hasMorphTargets"] and report["info"]["animationCount"] == 1
    # the same file with an index past the last vertex: the validator must say so
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(path))
    position = gltf.meshes[0].primitives[0].attributes.POSITION
    gltf.accessors[position].count -= 10  # the indices now point past the last vertex
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"".join(gltf.save_to_bytes()))
    assert _validate(broken)["issues"]["numErrors"] > 0


# ------------------------------------------------------------------ the command on a known model
def _rigid_motion(time) -> tuple:
    """The known motion: a turn about the vertical axis (1.2 rad per unit of time around the middle) and a
    slide along x."""
    angle = 1.2 * (float(time) - 0.5)
    rotation = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]]
    )
    return rotation, torch.tensor([0.4 * (float(time) - 0.5), 0.0, 0.0])


@pytest.fixture
def rigid_field(monkeypatch):
    """Every deformation field moves points by :func:`_rigid_motion` (Gaussians and mesh vertices alike)."""

    def forward(self, means, quats, scales, time, extra_features=None):
        rotation, shift = _rigid_motion(time)
        return DeformedGaussians(means @ rotation.T + shift, quats, scales)

    monkeypatch.setattr(DeformationField, "forward", forward)


@pytest.fixture(scope="module")
def ellipsoid_run(tmp_path_factory):
    """A ds4d-cpu run whose checkpoint holds an opaque ellipsoid shell of Gaussians coloured by height."""
    from nerfstudio.models.splatfacto import RGB2SH

    n = 4000
    config, model = tiny_cpu_run(tmp_path_factory.mktemp("mesh_run"), n)
    generator = torch.Generator().manual_seed(0)
    means = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1) * torch.tensor(SEMI_AXES)
    height = (means[:, 2:3] / SEMI_AXES[2] + 1) / 2  # 0 at the bottom, 1 at the top
    colours = torch.cat([0.2 + 0.7 * height, 0.3 + 0.0 * height, 0.9 - 0.7 * height], dim=-1).float()
    known = {
        "means": means.float(),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        "scales": torch.full((n, 3), math.log(RUN_SIGMA)),
        "opacities": torch.full((n, 1), 3.0),  # sigmoid(3) = 0.95
        "features_dc": RGB2SH(colours) if model.config.sh_degree > 0 else torch.logit(colours),
        "features_rest": torch.zeros_like(model.gauss_params["features_rest"]),
    }
    return save_run_checkpoint(config, model, known)


def _ply_frame(path: Path):
    ply = PlyData.read(str(path))
    vertex = ply["vertex"].data
    xyz = np.stack([vertex[a] for a in "xyz"], axis=-1).astype(np.float32)
    rgb = np.stack([vertex[c] for c in ("red", "green", "blue")], axis=-1).astype(np.float32) / 255.0
    faces = np.stack(ply["face"].data["vertex_indices"]).astype(np.int64)
    return xyz, faces, rgb


def test_export_mesh_writes_a_glb_frames_and_manifest_that_follow_the_gaussians(ellipsoid_run, tmp_path, rigid_field):
    from ds4d_ns.scripts.loading import load_trained_model

    out = tmp_path / "export"
    result = export_sequence(
        ExportGaussianSequence(
            load_config=ellipsoid_run,
            output_dir=out,
            num_times=NUM_TIMES,
            mesh=True,
            mesh_resolution=64,
            mesh_faces=4000,
            fps=10.0,
        )
    )
    names = sorted(p.name for p in (out / "mesh").iterdir())
    assert names == sorted(["animated.glb", "manifest.json", *[f"frame_{i:04d}.ply" for i in range(NUM_TIMES)]])
    assert len(list((out / "ply").iterdir())) == NUM_TIMES  # the splat frames are still written beside
    written = json.loads((out / "ds4d_export.json").read_text())["jobs"]["splats"]["files"]
    assert {f"mesh/{name}" for name in names} <= set(written)
    assert result.mesh_files[0] == out / "mesh" / "animated.glb"
    manifest = json.loads((out / "mesh" / "manifest.json").read_text())
    assert manifest["num_frames"] == NUM_TIMES and 0 < manifest["num_faces"] <= 4000
    assert [f["seconds"] for f in manifest["frames"]] == pytest.approx([k / 10 for k in range(NUM_TIMES)])
    assert manifest["source"]["checkpoint_step"] == 2 and manifest["source"]["method"] == "ds4d-cpu"
    assert _validate(out / "mesh" / "animated.glb")["issues"]["numErrors"] == 0

    model, _, _ = load_trained_model(ellipsoid_run)
    times = np.linspace(0, 1, NUM_TIMES)
    opaque = torch.sigmoid(model.opacities.view(-1)) > 0.5
    size = 64
    ious, psnrs, motions = [], [], []
    for index in (0, NUM_TIMES // 2, NUM_TIMES - 1):
        vertices, faces, rgb = _ply_frame(out / "mesh" / f"frame_{index:04d}.ply")
        assert faces.shape[0] == manifest["num_faces"] and vertices.shape[0] == manifest["num_vertices"]
        # the input camera at this frame: the Gaussian render against the mesh's
        camera = orbit_cameras([0.0], [float(times[index])], resolution=size, fov_deg=camera_layouts.INPUT_FOVY_DEG)
        render = model.get_outputs_for_camera(camera)
        viewmat = opengl_c2w_to_opencv_viewmat(camera.camera_to_worlds)[0]
        Ks, _, _ = intrinsics_and_size(camera)
        drawn = rasterize_mesh(
            torch.from_numpy(vertices), torch.from_numpy(faces), viewmat, Ks[0], size, size, torch.from_numpy(rgb)
        )
        ious.append(silhouette_iou(drawn["mask"], render["accumulation"][..., 0]))
        mesh_image = torch.where(drawn["mask"][..., None], drawn["rgb"], torch.ones(3))
        both = drawn["mask"] & (render["accumulation"][..., 0] > 0.5)
        psnrs.append(psnr(mesh_image, render["rgb"], both))
        centres = model.gaussians_at(float(times[index])).means[opaque].detach().numpy()
        motions.append(motion_distance(vertices, centres)[1])
        if index == 0:  # the check means something: the motion moves the mesh by more than the tolerance
            still, _, _ = _ply_frame(out / "mesh" / f"frame_{NUM_TIMES // 2:04d}.ply")
            assert motion_distance(still, centres)[1] > 2 * motions[-1]
    print(
        f"silhouette IoU {np.round(ious, 3).tolist()}, colour PSNR inside {np.round(psnrs, 1).tolist()} dB, "
        f"motion distance / diagonal {np.round(motions, 4).tolist()}"
    )
    assert min(ious) > 0.85
    assert min(psnrs) > 20.0
    # the mesh lies at the level surface, a constant distance outside the shell's centres, at every frame
    assert max(motions) < 0.06 and max(motions) < 1.1 * min(motions) + 0.002


def test_deform_points_moves_a_point_as_the_models_field_moves_a_gaussian_there(ellipsoid_run):
    from ds4d_ns.scripts.loading import load_trained_model

    model, _, _ = load_trained_model(ellipsoid_run)
    torch.manual_seed(1)
    with torch.no_grad():  # a field that moves: random last layers (a trained one is not zero either)
        for parameter in model.deformation.position_head[-1].parameters():
            parameter.normal_(0, 0.05)
        for parameter in model.deformation.hexplane.parameters():  # its time planes start constant
            parameter.add_(0.1 * torch.randn_like(parameter))
    points = model.means.detach().numpy()[:100]
    moved = mesh_maths.deform_points(model, points, [0.0, 0.7])
    for k, time in enumerate((0.0, 0.7)):
        expected = model.gaussians_at(time).means[:100].detach().numpy()
        np.testing.assert_allclose(moved[k], expected, atol=1e-6)
    assert np.abs(moved[1] - moved[0]).max() > 1e-4


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--mesh", "--mesh-resolution", "8"], "--mesh-resolution"),
        (["--mesh", "--mesh-faces", "10"], "--mesh-faces"),
        (["--mesh", "--fps", "0"], "--fps"),
        (["--mesh", "--mesh-texture", "--mesh-texture-size", "16"], "--mesh-texture-size"),
        (["--mesh", "--mesh-texture", "--mesh-texture-size", "100000"], "--mesh-texture-size"),
        (["--mesh-texture"], "--mesh-texture needs --mesh"),
    ],
)
def test_mesh_flags_out_of_range_are_refused_in_one_line_with_nothing_written(
    ellipsoid_run, tmp_path, monkeypatch, capsys, flags, named
):
    out = tmp_path / "export"
    message = refused_export(
        ["--load-config", str(ellipsoid_run), "--output-dir", str(out), *flags], monkeypatch, capsys
    )
    assert named in message and len(message.splitlines()) == 1
    assert not out.exists()


def test_a_run_without_a_deformation_field_is_refused_before_anything_is_written(ellipsoid_run, tmp_path, monkeypatch):
    from ds4d_ns.ds4d_model import Ds4dModel
    from ds4d_ns.scripts import loading

    real = loading.load_trained_model

    def without_field(run):
        model, step, folder = real(run)
        assert isinstance(model, Ds4dModel)
        model.deformation = None
        return model, step, folder

    monkeypatch.setattr(export, "load_trained_model", without_field)
    out = tmp_path / "export"
    with pytest.raises(UserError, match="no deformation field"):
        export_sequence(ExportGaussianSequence(load_config=ellipsoid_run, output_dir=out, num_times=3, mesh=True))
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


# ------------------------------------------------------------------ --mesh-texture
def _glb_texture(gltf, data: bytes) -> np.ndarray:
    """The glb's base colour texture as floats in [0, 1] (row 0 at v = 0)."""
    import io

    from PIL import Image

    texture = gltf.textures[gltf.materials[0].pbrMetallicRoughness.baseColorTexture.index]
    view = gltf.bufferViews[gltf.images[texture.source].bufferView]
    png = data[view.byteOffset : view.byteOffset + view.byteLength]
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255.0


def test_mesh_texture_gives_a_valid_glb_whose_uv_vertices_move_and_look_as_the_untextured_mesh(
    ellipsoid_run, tmp_path, rigid_field
):
    import pygltflib
    from scipy.spatial import cKDTree

    from ds4d_ns.exporting.mesh_texture import sample_texture
    from ds4d_ns.scripts.loading import load_trained_model

    out = tmp_path / "export"
    export_sequence(
        ExportGaussianSequence(
            load_config=ellipsoid_run,
            output_dir=out,
            num_times=NUM_TIMES,
            mesh=True,
            mesh_resolution=64,
            mesh_faces=4000,
            mesh_texture=True,
            mesh_texture_size=256,
        )
    )
    glb = out / "mesh" / "animated.glb"
    report = _validate(glb)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    manifest = json.loads((out / "mesh" / "manifest.json").read_text())
    gltf = pygltflib.GLTF2().load(str(glb))
    data = gltf.binary_blob()
    primitive = gltf.meshes[0].primitives[0]
    assert primitive.attributes.COLOR_0 is None  # glTF would multiply it with the texture
    accessor = gltf.accessors[primitive.attributes.TEXCOORD_0]
    view = gltf.bufferViews[accessor.bufferView]
    uvs = np.frombuffer(data, np.float32, accessor.count * 2, view.byteOffset).reshape(-1, 2)
    base = _accessor(gltf, data, primitive.attributes.POSITION)
    faces = _accessor(gltf, data, primitive.indices).reshape(-1, 3)
    assert base.shape[0] == manifest["settings"]["texture"]["glb_vertices"] > manifest["num_vertices"]
    assert faces.shape[0] == manifest["num_faces"]

    # the unwrapped mesh's vertices are copies of the PLY frames' vertices: find each one's original at the
    # middle frame (where they coincide exactly), then every frame k must be base + target k through that map
    middle = NUM_TIMES // 2
    plys = [_ply_frame(out / "mesh" / f"frame_{k:04d}.ply") for k in range(NUM_TIMES)]
    shown = [base + _accessor(gltf, data, target["POSITION"]) for target in primitive.targets]
    distance, vmapping = cKDTree(plys[middle][0]).query(shown[middle])
    assert distance.max() < 1e-5
    assert len(np.unique(vmapping)) == manifest["num_vertices"]  # every original vertex is there
    for k in range(NUM_TIMES):
        np.testing.assert_allclose(shown[k], plys[k][0][vmapping], atol=1e-5)
    # the same triangles as the PLY frames (faces keep their order through the unwrapping)
    np.testing.assert_array_equal(vmapping[faces], plys[middle][1])

    # the texture at each vertex's UV is that vertex's colour from the views (the PLY's vertex colour)
    image = _glb_texture(gltf, data)
    assert image.shape == (256, 256, 3)
    sampled = sample_texture(image, uvs)
    difference = np.abs(sampled - plys[middle][2][vmapping]).max(axis=-1)
    fidelity = -10 * math.log10(float(np.mean((sampled - plys[middle][2][vmapping]) ** 2)))

    # the textured mesh rendered at the input camera against the Gaussian render (and the vertex-coloured mesh)
    model, _, _ = load_trained_model(ellipsoid_run)
    size = 96
    camera = orbit_cameras([0.0], [0.5], resolution=size, fov_deg=camera_layouts.INPUT_FOVY_DEG)
    render = model.get_outputs_for_camera(camera)
    viewmat = opengl_c2w_to_opencv_viewmat(camera.camera_to_worlds)[0]
    Ks, _, _ = intrinsics_and_size(camera)
    vertices = torch.from_numpy(shown[middle])
    drawn = rasterize_mesh(
        vertices,
        torch.from_numpy(faces.astype(np.int64)),
        viewmat,
        Ks[0],
        size,
        size,
        torch.from_numpy(np.c_[uvs, np.zeros_like(uvs[:, :1])]),  # UVs interpolated as a colour would be
    )
    mask = drawn["mask"]
    textured = torch.ones(size, size, 3)
    textured[mask] = torch.from_numpy(sample_texture(image, drawn["rgb"][mask].numpy()[:, :2]).astype(np.float32))
    plain = rasterize_mesh(
        vertices,
        torch.from_numpy(faces.astype(np.int64)),
        viewmat,
        Ks[0],
        size,
        size,
        torch.from_numpy(plys[middle][2][vmapping]),
    )
    vertex_coloured = torch.where(plain["mask"][..., None], plain["rgb"], torch.ones(3))
    both = mask & (render["accumulation"][..., 0] > 0.5)
    psnr_textured, psnr_vertex = psnr(textured, render["rgb"], both), psnr(vertex_coloured, render["rgb"], both)
    print(
        f"texture at the vertices' UVs vs their colours: PSNR {fidelity:.1f} dB, max {difference.max():.3f}, "
        f"99th percentile {np.percentile(difference, 99):.3f}; input view at t=0.5 against the Gaussian render: "
        f"textured {psnr_textured:.1f} dB, vertex colours {psnr_vertex:.1f} dB; "
        f"texels covered {manifest['settings']['texture']['covered_texels']:.2f}, "
        f"seen {manifest['settings']['texture']['seen_texels']:.2f}"
    )
    assert fidelity > 30.0 and np.percentile(difference, 99) < 0.1
    assert psnr_textured > 20.0 and psnr_textured > psnr_vertex - 1.0
