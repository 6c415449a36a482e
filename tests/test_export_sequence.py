"""``ds4d-export`` writes a splat sequence that SuperSplat and other players open as an animation.

The run here is a real ds4d-cpu checkpoint of known Gaussians, written without training (its
deformation heads are zero-initialised, so the model does not move); a test that needs motion
gives some Gaussians a known offset proportional to time. The files are read back with plyfile
(and the SPZ header and positions with the standard library), never with the writer's own code.
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_run_checkpoint, tiny_cpu_run
from plyfile import PlyData

from ds4d_ns.ds4d_model import Ds4dModel
from ds4d_ns.errors import UserError
from ds4d_ns.exporting.manifest import frame_file_name
from ds4d_ns.exporting.splat_frame import SH_C0, logit_colours_to_sh_dc
from ds4d_ns.io.output_folder import OutputFolderError
from ds4d_ns.io.writers import write_bytes_atomic
from ds4d_ns.scripts import export
from ds4d_ns.scripts.export import ExportGaussianSequence, ExportResult, export_sequence

NUM_GAUSSIANS = 12
MOVING = np.arange(NUM_GAUSSIANS) < 4
"""The Gaussians that the moving model displaces."""
VELOCITY = np.array([0.3, -0.2, 0.1], dtype=np.float32)
"""Offset of a moving Gaussian per unit of time."""
SUPERSPLAT_SEQUENCE = re.compile(r"(.*?)(\d+)(?:\.compressed)?\.ply$")
"""What SuperSplat's isPlySequence matches (playcanvas/supersplat src/file-handler.ts)."""
# the 3DGS reference order (graphdeco-inria/gaussian-splatting scene/gaussian_model.py) at SH degree 1
PLY_PROPERTIES = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    + [f"f_rest_{i}" for i in range(9)]
    + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A ds4d-cpu run folder whose checkpoint holds known Gaussians; returns (config.yml, canonical params)."""
    config, model = tiny_cpu_run(tmp_path_factory.mktemp("run"), NUM_GAUSSIANS)
    rng = np.random.default_rng(0)
    rest = model.gauss_params["features_rest"]
    known = {
        "means": rng.uniform(-0.5, 0.5, (NUM_GAUSSIANS, 3)),
        "quats": rng.normal(size=(NUM_GAUSSIANS, 4)) * 3.0,  # not unit: the export normalises
        "scales": rng.uniform(-5, -2, (NUM_GAUSSIANS, 3)),
        "opacities": rng.uniform(-2, 2, (NUM_GAUSSIANS, 1)),
        "features_dc": rng.uniform(-1, 1, (NUM_GAUSSIANS, 3)),
        # coefficient k of channel c is 0.1 * c + 0.01 * k: the file order is readable from the values
        "features_rest": np.broadcast_to(
            0.1 * np.arange(3)[None, None, :] + 0.01 * np.arange(rest.shape[1])[None, :, None], rest.shape
        ),
    }
    config_path = save_run_checkpoint(config, model, known)
    canonical = {name: np.array(values, dtype=np.float32) for name, values in known.items()}
    return config_path, canonical


@pytest.fixture
def moving_model(monkeypatch):
    """Every loaded ds4d model moves the MOVING Gaussians by VELOCITY * time and leaves the others."""
    exact = Ds4dModel.gaussians_at

    def gaussians_at(self, time):
        geometry = exact(self, time)
        offset = torch.zeros_like(geometry.means)
        offset[torch.as_tensor(MOVING)] = torch.as_tensor(VELOCITY) * float(time)
        return type(geometry)(geometry.means + offset, geometry.quats, geometry.scales)

    monkeypatch.setattr(Ds4dModel, "gaussians_at", gaussians_at)


def _export(config_path: Path, out: Path, **kwargs) -> ExportResult:
    return export_sequence(ExportGaussianSequence(load_config=config_path, output_dir=out, **kwargs))


def _vertices(path: Path) -> np.ndarray:
    ply = PlyData.read(str(path))
    assert [element.name for element in ply.elements] == ["vertex"]
    return ply["vertex"].data


def _xyz(vertices: np.ndarray) -> np.ndarray:
    return np.stack([vertices[axis] for axis in "xyz"], axis=-1)


def test_ply_frames_are_a_numbered_3dgs_sequence_that_supersplat_recognises(run, tmp_path):
    config_path, canonical = run
    out = tmp_path / "export"
    result = _export(config_path, out, num_times=5)
    ply_folder = out / "ply"
    names = sorted(p.name for p in ply_folder.iterdir())
    assert names == [f"frame_{i:04d}.ply" for i in range(5)]  # the folder holds the frames and nothing else
    assert result.ply_files == [ply_folder / name for name in names]
    matches = [SUPERSPLAT_SEQUENCE.match(name) for name in names]
    assert all(matches) and len({m.group(1) for m in matches}) == 1  # one common prefix: a sequence
    assert [int(m.group(2)) for m in matches] == list(range(5))  # numbered in frame order
    for path in result.ply_files:
        ply = PlyData.read(str(path))
        assert ply.byte_order == "<" and not ply.text
        vertices = _vertices(path)
        assert list(vertices.dtype.names) == PLY_PROPERTIES
        assert all(vertices.dtype[name] == np.dtype("<f4") for name in PLY_PROPERTIES)
        assert len(vertices) == NUM_GAUSSIANS
        quats = np.stack([vertices[f"rot_{i}"] for i in range(4)], axis=-1)
        np.testing.assert_allclose(np.linalg.norm(quats, axis=-1), 1.0, atol=1e-6)
        expected_quats = canonical["quats"] / np.linalg.norm(canonical["quats"], axis=-1, keepdims=True)
        np.testing.assert_allclose(quats, expected_quats, atol=1e-6)  # w first, as stored
        for i in range(3):
            assert np.all(vertices[f"n{'xyz'[i]}"] == 0)
            np.testing.assert_allclose(vertices[f"f_dc_{i}"], canonical["features_dc"][:, i], atol=1e-6)
            np.testing.assert_allclose(vertices[f"scale_{i}"], canonical["scales"][:, i], atol=1e-6)  # log scale
            for k in range(3):  # channel-major: f_rest_{3c + k} is coefficient k of channel c
                np.testing.assert_allclose(vertices[f"f_rest_{3 * i + k}"], 0.1 * i + 0.01 * k, atol=1e-6)
        np.testing.assert_allclose(vertices["opacity"], canonical["opacities"][:, 0], atol=1e-6)  # logit


def test_gaussians_move_between_frames_only_where_the_model_moves(run, tmp_path, moving_model):
    config_path, canonical = run
    result = _export(config_path, tmp_path / "export", num_times=3)
    assert result.times == [0.0, 0.5, 1.0]
    positions = [_xyz(_vertices(path)) for path in result.ply_files]
    for time, xyz in zip(result.times, positions):
        np.testing.assert_allclose(xyz[MOVING], canonical["means"][MOVING] + VELOCITY * time, atol=1e-6)
        np.testing.assert_array_equal(xyz[~MOVING], canonical["means"][~MOVING])  # not moved, bit for bit
    assert np.abs(positions[-1][MOVING] - positions[0][MOVING]).min() > 0.09


def test_a_still_model_exports_identical_frames(run, tmp_path):
    config_path, _ = run
    result = _export(config_path, tmp_path / "export", num_times=2)
    first, last = (_vertices(path) for path in result.ply_files)
    np.testing.assert_array_equal(first, last)


def test_manifest_lists_times_files_counts_and_bounds_of_every_frame(run, tmp_path, moving_model):
    config_path, canonical = run
    out = tmp_path / "export"
    result = _export(config_path, out, num_times=4)
    manifest = json.loads(result.manifest.read_text())
    assert result.manifest == out / "manifest.json"
    assert manifest["format"] == "ds4d-splat-sequence" and manifest["frame_count"] == 4
    assert manifest["source"]["checkpoint_step"] == 2 and manifest["source"]["checkpoint"] == "step-000000002.ckpt"
    assert manifest["source"]["config"] == str(config_path.resolve())
    assert manifest["formats"]["ply"]["properties"] == PLY_PROPERTIES and "spz" not in manifest["formats"]
    assert [f["time"] for f in manifest["frames"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert manifest["time_range"] == [0.0, 1.0]
    everything = []
    for entry, path in zip(manifest["frames"], result.ply_files):
        assert out / entry["ply"] == path
        xyz = _xyz(_vertices(path))
        everything.append(xyz)
        assert entry["num_gaussians"] == len(xyz) == NUM_GAUSSIANS
        np.testing.assert_allclose(entry["bounds"]["min"], xyz.min(axis=0), atol=1e-6)
        np.testing.assert_allclose(entry["bounds"]["max"], xyz.max(axis=0), atol=1e-6)
    everything = np.concatenate(everything)
    np.testing.assert_allclose(manifest["bounds"]["min"], everything.min(axis=0), atol=1e-6)
    np.testing.assert_allclose(manifest["bounds"]["max"], everything.max(axis=0), atol=1e-6)
    assert manifest["frames"][0]["bounds"] != manifest["frames"][-1]["bounds"]  # the moving Gaussians moved
    times = json.loads((out / "times.json").read_text())  # kept for readers of earlier versions
    assert [(f["file_path"], f["time"]) for f in times["frames"]] == [(f["ply"], f["time"]) for f in manifest["frames"]]


def test_spz_frames_hold_the_same_gaussians_in_niantics_format(run, tmp_path, moving_model):
    pytest.importorskip("gsply", reason="SPZ output needs the optional gsply package")
    config_path, _ = run
    out = tmp_path / "export"
    result = _export(config_path, out, num_times=2, spz=True)
    assert sorted(p.name for p in (out / "spz").iterdir()) == ["frame_0000.spz", "frame_0001.spz"]
    manifest = json.loads(result.manifest.read_text())
    assert manifest["formats"]["spz"]["version"] == 3
    assert [out / f["spz"] for f in manifest["frames"]] == result.spz_files
    for spz_path, ply_path in zip(result.spz_files, result.ply_files):
        # Niantic's layout (github.com/nianticlabs/spz README): gzip of a 16-byte header, then positions
        payload = gzip.decompress(spz_path.read_bytes())
        magic, version, count, sh_degree, fractional_bits = struct.unpack_from("<IIIBB", payload)
        assert (magic, version, count, sh_degree) == (0x5053474E, 3, NUM_GAUSSIANS, 1)
        raw = np.frombuffer(payload, np.uint8, count=9 * count, offset=16).reshape(count, 3, 3).astype(np.int32)
        fixed = raw[..., 0] | (raw[..., 1] << 8) | (raw[..., 2] << 16)
        fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)  # signed 24-bit
        np.testing.assert_allclose(fixed / 2.0**fractional_bits, _xyz(_vertices(ply_path)), atol=2.0**-fractional_bits)


def test_spz_without_its_writer_is_refused_before_the_model_loads(run, tmp_path, monkeypatch):
    config_path, _ = run
    monkeypatch.setitem(sys.modules, "gsply", None)  # as if not installed: importing it raises ImportError

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the missing SPZ writer was reported")

    monkeypatch.setattr(export, "load_trained_model", refuse)
    with pytest.raises(UserError, match="pip install gsply"):
        _export(config_path, tmp_path / "export", num_times=2, spz=True)
    assert not (tmp_path / "export").exists()


def test_a_rerun_replaces_its_own_files_and_keeps_the_users(run, tmp_path, monkeypatch):
    config_path, _ = run
    # the SPZ encoder is beside the point here (and optional): any atomic write of the file will do
    monkeypatch.setattr(export, "require_spz_writer", lambda: None)
    monkeypatch.setattr(export, "write_spz_atomic", lambda path, frame: write_bytes_atomic(path, b"NGSP"))
    out = tmp_path / "export"
    _export(config_path, out, num_times=3, spz=True)
    notes = out / "notes.txt"
    notes.write_text("the user's own file")
    with pytest.raises(OutputFolderError, match="holds notes.txt"):
        _export(config_path, out, num_times=2)
    result = _export(config_path, out, num_times=2, force=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "ds4d_export.json",
        "manifest.json",
        "notes.txt",
        "ply",
        "ply/frame_0000.ply",
        "ply/frame_0001.ply",
        "times.json",
    ]
    assert notes.read_text() == "the user's own file"
    assert result.spz_files == [] and json.loads(result.manifest.read_text())["frame_count"] == 2


def test_main_returns_the_ply_frames_for_the_command_and_older_callers(run, tmp_path):
    config_path, _ = run
    paths = ExportGaussianSequence(load_config=config_path, output_dir=tmp_path / "export", num_times=2).main()
    assert paths == [tmp_path / "export/ply/frame_0000.ply", tmp_path / "export/ply/frame_0001.ply"]


def test_frame_names_sort_as_text_in_frame_order_past_ten_thousand_frames():
    names = [frame_file_name(i, 10_001, "ply") for i in range(10_001)]
    assert names[0] == "frame_00000.ply" and names[-1] == "frame_10000.ply"
    assert sorted(names) == names
    assert frame_file_name(7, 30, "spz") == "frame_0007.spz"


def test_logit_colours_become_sh_coefficients_that_render_the_same_colour():
    logits = np.array([[-3.0, 0.0, 2.5]], dtype=np.float32)
    colours = 1.0 / (1.0 + np.exp(-logits))
    np.testing.assert_allclose(0.5 + SH_C0 * logit_colours_to_sh_dc(logits), colours, atol=1e-6)
