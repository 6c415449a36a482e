"""``ds4d-export --web`` writes a folder that plays the clip in a browser, and headless Chromium plays it.

The run is a real ds4d-cpu checkpoint of known Gaussians written without training (as in
``test_export_sequence.py``): an upright post and, on it, an arm that the ``moving_model`` fixture lifts
in proportion to time. The browser test serves ``web/`` on 127.0.0.1, opens it in headless Chromium
(WebGL on SwiftShader, the CPU) and compares what the page shows with the model's own renders of the
camera the page reports. It needs Debian's ``chromium`` (``scripts/setup.sh`` installs it) and the
vendored renderer, and is skipped, with the reason, without them.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import refused_export, save_run_checkpoint, tiny_cpu_run

from ds4d_ns import camera_layouts
from ds4d_ns.ds4d_model import Ds4dModel
from ds4d_ns.errors import UserError
from ds4d_ns.exporting import web
from ds4d_ns.exporting.headless_browser import HeadlessChromium, find_chromium, serve_folder
from ds4d_ns.io.output_folder import OutputFolderError
from ds4d_ns.scripts import export
from ds4d_ns.scripts.export import ExportGaussianSequence, ExportResult, export_sequence

WIDTH, HEIGHT = 224, 168
"""The dataset's image size: not square, so the page's aspect ratio is tested too."""
INPUT_VIEW = camera_layouts.OrbitView(0.0, 15.0, 2.0, camera_layouts.INPUT_FOVY_DEG)
"""The dataset's input camera: a little above the object, so up and down are told apart."""
NUM_POST, NUM_ARM = 300, 120
LIFT = 0.35
"""How far the arm rises (+z) from time 0 to time 1."""
NUM_TIMES = 5


def _renderer_ready() -> bool:
    try:
        web.require_web_renderer()
    except UserError:
        return False
    return True


needs_renderer = pytest.mark.skipif(
    not _renderer_ready(), reason="the vendored web renderer is not installed (bash scripts/setup.sh)"
)
needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="no chromium to open the page in (bash scripts/setup.sh installs it)"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """config.yml of a ds4d-cpu run of known Gaussians, with a dataset that records the input camera."""
    root = tmp_path_factory.mktemp("web_run")
    data = root / "data"
    data.mkdir()
    c2w = np.eye(4)
    c2w[:3, :4] = camera_layouts.orbit_c2w(INPUT_VIEW).double().numpy()
    focal = camera_layouts.focal_from_fov(INPUT_VIEW.fov_deg, HEIGHT)
    frames = [
        {
            "file_path": f"images/{i:04d}.png",
            "transform_matrix": c2w.tolist(),
            "fl_x": focal,
            "fl_y": focal,
            "cx": WIDTH / 2,
            "cy": HEIGHT / 2,
            "w": WIDTH,
            "h": HEIGHT,
            "time": i / (NUM_TIMES - 1),
            "frame_index": i,
            "role": "input",
            "view_index": 0,
        }
        for i in range(NUM_TIMES)
    ]
    (data / "transforms.json").write_text(json.dumps({"frames": frames}))
    config, model = tiny_cpu_run(root, NUM_POST + NUM_ARM, data)
    rng = np.random.default_rng(0)
    post = rng.uniform([-0.32, -0.08, -0.5], [-0.16, 0.08, 0.3], (NUM_POST, 3))
    arm = rng.uniform([-0.16, -0.06, 0.1], [0.45, 0.06, 0.22], (NUM_ARM, 3))
    n = NUM_POST + NUM_ARM
    known = {
        "means": np.concatenate([post, arm]),
        "quats": np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)),
        "scales": np.full((n, 3), math.log(0.035)),
        "opacities": np.full((n, 1), 4.0),
        "features_dc": np.full((n, 3), 1.4),  # a light grey, the same from every side (no higher SH terms)
        "features_rest": np.zeros(tuple(model.gauss_params["features_rest"].shape)),
    }
    return save_run_checkpoint(config, model, known)


@pytest.fixture
def moving_model(monkeypatch):
    """Every loaded ds4d model lifts the arm by LIFT * time and leaves the post where it is."""
    exact = Ds4dModel.gaussians_at

    def gaussians_at(self, time):
        geometry = exact(self, time)
        offset = torch.zeros_like(geometry.means)
        offset[NUM_POST:, 2] = LIFT * float(time)
        return type(geometry)(geometry.means + offset, geometry.quats, geometry.scales)

    monkeypatch.setattr(Ds4dModel, "gaussians_at", gaussians_at)


def _export(config_path: Path, out: Path, **kwargs) -> ExportResult:
    return export_sequence(ExportGaussianSequence(load_config=config_path, output_dir=out, **kwargs))


@needs_renderer
def test_the_page_folder_holds_the_frames_manifest_and_renderer_and_names_no_network_address(run, tmp_path):
    out = tmp_path / "export"
    result = _export(run, out, num_times=NUM_TIMES, web=True, fps=8.0)
    page = out / "web"
    assert result.web_page == page / "index.html"
    manifest = json.loads((page / "manifest.json").read_text())
    assert manifest["format"] == "ds4d-web-clip" and manifest["frame_count"] == NUM_TIMES
    assert manifest["fps"] == 8.0 and manifest["duration_s"] == pytest.approx((NUM_TIMES - 1) / 8.0)
    assert manifest["renderer"] == web.RENDERER_PACKAGES
    assert [f["time"] for f in manifest["frames"]] == pytest.approx(np.linspace(0, 1, NUM_TIMES).tolist())
    camera = manifest["camera"]
    assert camera["source"].startswith("transforms.json") and (camera["width"], camera["height"]) == (WIDTH, HEIGHT)
    assert camera["fov_y_deg"] == pytest.approx(INPUT_VIEW.fov_deg)
    for frame in manifest["frames"]:
        payload = gzip.decompress((page / frame["file"]).read_bytes())
        magic, version, count = struct.unpack_from("<III", payload)
        assert (magic, version, count) == (0x5053474E, web.SPZ_VERSION, NUM_POST + NUM_ARM)  # "NGSP"
        assert frame["num_gaussians"] == count
        assert frame["bytes"] == (page / frame["file"]).stat().st_size
        assert frame["bytes"] <= 30 * frame["num_gaussians"] + 1024  # the budget: 3 MB per 100k Gaussians
    for _, dest in web.VENDORED_FILES:
        assert (page / dest).is_file()
    assert {p.name for p in (page / "vendor").rglob("*LICENSE")} == {"LICENSE", "fflate.LICENSE"}
    for name in web.PAGE_FILES:  # everything the page loads lies in its folder
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", (page / name).read_text())
    listed = json.loads((out / "ds4d_export.json").read_text())["jobs"]["splats"]["files"]
    assert set(web.web_file_names(NUM_TIMES)) <= set(listed)  # a rerun replaces them, and only them


@needs_renderer
@pytest.mark.parametrize("flags, named", [(["--fps", "0"], "--fps"), (["--fps", "5000"], "--fps")])
def test_flags_out_of_range_are_refused_in_one_line_with_nothing_written(
    run, tmp_path, monkeypatch, capsys, flags, named
):
    out = tmp_path / "export"
    message = refused_export(
        ["--load-config", str(run), "--output-dir", str(out), "--web", *flags], monkeypatch, capsys
    )
    assert named in message and len(message.splitlines()) == 1
    assert not out.exists()


@needs_renderer
def test_a_folder_holding_a_users_file_is_refused_and_left_as_it_was(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "export"
    (out / "web").mkdir(parents=True)
    (out / "web" / "index.html").write_text("the user's page")
    message = refused_export(["--load-config", str(run), "--output-dir", str(out), "--web"], monkeypatch, capsys)
    assert len(message.splitlines()) == 1
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["web", "web/index.html"]
    assert (out / "web" / "index.html").read_text() == "the user's page"
    # --force writes beside a user's files, never over them: refused before anything is written
    with pytest.raises(OutputFolderError, match="index.html"):
        _export(run, out, web=True, force=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["web", "web/index.html"]


def test_a_missing_renderer_is_refused_before_the_model_loads_saying_how_to_install_it(run, tmp_path, monkeypatch):
    monkeypatch.setenv(web.RENDERER_ENV, str(tmp_path / "nowhere"))

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the missing renderer was reported")

    monkeypatch.setattr(export, "load_trained_model", refuse)
    with pytest.raises(web.WebRendererUnavailable, match="scripts/setup.sh") as refused:
        _export(run, tmp_path / "export", web=True)
    assert "@sparkjsdev/spark@2.2.0" in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "export").exists()


def _silhouette_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-pixels, pixels + 1):
        for dx in range(-pixels, pixels + 1):
            out |= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    return out


def _our_accumulation(model, page_camera: dict, time: float) -> np.ndarray:
    """The model's own render (alpha, [H, W]) through the camera the page reports."""
    from nerfstudio.cameras.cameras import Cameras, CameraType

    pose = np.asarray(page_camera["matrixWorld"], dtype=np.float32).reshape(4, 4).T  # three.js: column-major
    width, height = page_camera["width"], page_camera["height"]
    focal = 0.5 * height / math.tan(math.radians(page_camera["fovYDeg"]) / 2)  # square pixels: fx = fy
    cameras = Cameras(
        camera_to_worlds=torch.as_tensor(pose[None, :3, :4]),
        fx=torch.tensor([[focal]]),
        fy=torch.tensor([[focal]]),
        cx=torch.tensor([[width / 2]]),
        cy=torch.tensor([[height / 2]]),
        width=torch.tensor([[width]]),
        height=torch.tensor([[height]]),
        camera_type=CameraType.PERSPECTIVE,
        times=torch.tensor([[time]]),
    )
    with torch.no_grad():
        return model.get_outputs(cameras)["accumulation"].reshape(height, width).numpy()


def _page_silhouette(image: np.ndarray) -> np.ndarray:
    """Pixels of a black-background screenshot the splats cover at least half (their colour is one grey)."""
    grey = image.astype(np.float32).mean(axis=-1)
    return grey > 0.5 * np.percentile(grey[grey > 8], 99)


@needs_renderer
@needs_chromium
@pytest.mark.slow
def test_headless_chromium_plays_the_clip_and_shows_what_the_model_renders(run, tmp_path, moving_model):
    from ds4d_ns.scripts.loading import load_trained_model, resolve_run

    out = tmp_path / "export"
    _export(run, out, num_times=NUM_TIMES, web=True)
    model, _, _ = load_trained_model(resolve_run(run))
    with serve_folder(out / "web") as base, HeadlessChromium(WIDTH, HEIGHT) as browser:
        shots, cameras = {}, {}
        for time in (0.0, 0.5, 1.0):
            browser.open(f"{base}index.html?t={time}&bg=000000&ui=0")
            browser.evaluate("window.ds4d.ready.then(() => window.ds4d.afterFrames(20))")
            assert browser.evaluate("window.ds4d.playing") is False  # ?t= opens paused, at that time
            assert browser.evaluate("window.ds4d.time") == pytest.approx(time)
            shots[time], cameras[time] = browser.screenshot(), browser.evaluate("window.ds4d.camera()")
        assert shots[0.5].shape == (HEIGHT, WIDTH, 3)
        assert (cameras[0.5]["width"], cameras[0.5]["height"]) == (WIDTH, HEIGHT)

        # the page's controls: the label shows the frame time, Play plays, the mouse orbits and zooms
        browser.open(f"{base}index.html?t=0.5")
        browser.evaluate("window.ds4d.ready.then(() => window.ds4d.afterFrames(3))")
        assert browser.evaluate("document.getElementById('label').textContent").startswith("t = 0.500")
        seen = browser.evaluate(
            """new Promise((resolve) => {
                 const seen = new Set(); document.getElementById("play").click();
                 const look = () => { seen.add(window.ds4d.frameIndex);
                   seen.size >= 3 ? resolve(seen.size) : requestAnimationFrame(look); };
                 look(); })"""
        )
        assert seen >= 3
        before = browser.evaluate("window.ds4d.camera().matrixWorld")
        for kind, x in (("mousePressed", 100), ("mouseMoved", 130), ("mouseMoved", 160), ("mouseReleased", 160)):
            browser.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": 60, "button": "left", "buttons": 1 if kind != "mouseReleased" else 0},
            )
        browser.evaluate("window.ds4d.afterFrames(2)")
        turned = browser.evaluate("window.ds4d.camera().matrixWorld")
        browser.send("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": 100, "y": 60, "deltaX": 0, "deltaY": -300})
        browser.evaluate("window.ds4d.afterFrames(2)")
        zoomed = browser.evaluate("window.ds4d.camera().matrixWorld")
        assert browser.errors == [], browser.errors

    assert not np.allclose(before, turned, atol=1e-4)  # dragging orbits
    assert np.linalg.norm(zoomed[12:15]) < np.linalg.norm(turned[12:15]) - 1e-3  # the wheel zooms in

    # not blank: the object covers a good part of the view
    page = {time: _page_silhouette(shot) for time, shot in shots.items()}
    assert 0.03 < page[0.5].mean() < 0.6

    # the front view at mid-clip is the model's own render of the camera the page reports
    ours = {time: _our_accumulation(model, cameras[time], time) > 0.5 for time in shots}
    iou = _silhouette_iou(page[0.5], ours[0.5])
    assert iou >= 0.8, f"silhouette IoU {iou:.3f} between the page and the model's render"

    # first and last frames differ where the clip moves (the arm), and only there
    changed = np.abs(shots[0.0].astype(np.int16) - shots[1.0].astype(np.int16)).max(axis=-1) > 48
    moving = _dilate(ours[0.0] ^ ours[1.0], 3)
    assert changed.sum() > 0.01 * changed.size
    assert changed[moving].sum() >= 0.95 * changed.sum()


def test_the_set_up_installs_the_renderer_versions_the_page_is_tested_with():
    setup = (Path(__file__).parents[1] / "scripts" / "setup.sh").read_text()
    pins = re.search(r"^web_packages=\((.*)\)$", setup, re.MULTILINE)
    assert pins is not None
    packages = dict(item.strip('"').rsplit("@", 1) for item in pins.group(1).split())
    assert packages == web.RENDERER_PACKAGES
