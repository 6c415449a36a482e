"""``ds4d-eval``: every metric on small inputs with known answers, the view-folder checks, the report, and
``ds4d-eval model`` on a tiny trained run. All offline: the networks are the real classes with random
weights, loaded through the same flags (``--clip-model``, ``--vgg16``, ``--i3d``, ``--inception``) users pass."""

from __future__ import annotations

import csv
import fractions
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
from conftest import ds4d_parts

from ds4d_ns.errors import UserError
from ds4d_ns.evaluation import fvd as fvd_module
from ds4d_ns.evaluation.metrics import (
    ClipSimilarity,
    FidVid,
    LpipsVgg,
    MetricUnavailable,
    masked_psnr,
    moving_mask,
    to_unit,
)
from ds4d_ns.evaluation.metrics import psnr as psnr_fn
from ds4d_ns.evaluation.metrics import ssim as ssim_fn
from ds4d_ns.evaluation.protocol import composite_on_white
from ds4d_ns.evaluation.score import MetricOptions, Scorers, score_views
from ds4d_ns.evaluation.videos import ViewSetError, ViewVideos
from ds4d_ns.scripts import eval as eval_script

NAMES = ("eval_0", "eval_1", "eval_2", "eval_3")


# ---------------------------------------------------------------------------------------- inputs
def scene(views: int = 4, frames: int = 8, size: int = 48, seed: int = 0, speed: float = 1.0, hue: float = 0.0):
    """uint8 ``[V, T, S, S, 3]``: a smooth textured object on white with a disc moving across it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    videos = np.empty((views, frames, size, size, 3), dtype=np.uint8)
    for v in range(views):
        phase = rng.uniform(0, 2 * np.pi, size=3)
        texture = np.stack([0.5 + 0.4 * np.sin(6 * x + 4 * y + phase[c] + hue * c) for c in range(3)], axis=-1)
        body = ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.16)[..., None]
        for t in range(frames):
            cx = 0.3 + 0.4 * ((speed * t / max(frames - 1, 1)) % 1.0)
            disc = ((x - cx) ** 2 + (y - 0.45) ** 2 < 0.01)[..., None]
            image = np.where(body, texture, 1.0)
            image = np.where(disc, np.array([0.9, 0.2 + 0.3 * hue, 0.1]), image)
            videos[v, t] = np.rint(image * 255).astype(np.uint8)
    return videos


def shifted(videos: np.ndarray, pixels: int) -> np.ndarray:
    """Every frame moved ``pixels`` to the right, the uncovered strip white."""
    out = np.roll(videos, pixels, axis=-2)
    out[..., :pixels, :] = 255
    return out


def blurred(videos: np.ndarray, radius: float) -> np.ndarray:
    from PIL import Image, ImageFilter

    flat = videos.reshape(-1, *videos.shape[-3:])
    out = [np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(radius))) for f in flat]
    return np.stack(out).reshape(videos.shape)


def view_set(videos: np.ndarray, names: Sequence[str] = NAMES) -> ViewVideos:
    return ViewVideos(tuple(names), videos, tuple(names))


def write_views(root: Path, videos: np.ndarray, names: Sequence[str] = NAMES, video_files: bool = False) -> Path:
    """A view set on disk: per view a folder 0.png .. (the Consistent4D layout) or an mp4."""
    from PIL import Image

    from ds4d_ns.io.video import write_video_atomic

    for name, video in zip(names, videos):
        if video_files:
            write_video_atomic(root / f"{name}.mp4", list(video), fps=10)
        else:
            (root / name).mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(video):
                Image.fromarray(frame).save(root / name / f"{t}.png")
    return root


class PooledPixels(torch.nn.Module):
    """A clip / image feature extractor with known behaviour: colour means over a grid (and time)."""

    def __init__(self, grid: int = 4) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # FVD clips [N, 3, L, S, S]
            x = x.mean(dim=2)
        return torch.nn.functional.adaptive_avg_pool2d(x.float(), self.grid).flatten(1)


# ---------------------------------------------------------------------------------------- weights
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """A CLIPModel of the real class with tiny sizes and random weights, with its image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = tmp_path_factory.mktemp("tiny_clip")
    torch.manual_seed(0)
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
    text.update(max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=14)
    CLIPModel(
        CLIPConfig(text_config=text, vision_config={**vision, "image_size": 28}, projection_dim=8)
    ).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def random_vgg16(tmp_path_factory) -> Path:
    """torchvision's VGG16 state dict with random convolutions; the classifier (unused by LPIPS) as
    zero views that take no space in the file."""
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.vgg16(weights=None).state_dict()
    state = {k: v if k.startswith("features.") else torch.zeros(1).expand(v.shape) for k, v in state.items()}
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def random_i3d(tmp_path_factory) -> Path:
    """cd-fvd's 400-class I3D with random weights, saved as a state dict like i3d_pretrained_400.pt."""
    from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("i3d") / "i3d-random.pt"
    torch.save(InceptionI3d(400, in_channels=3).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory) -> Path:
    """torch-fidelity's FID Inception with random weights, saved as a state dict like its release file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    empty = tmp_path_factory.mktemp("inception") / "empty.pth"
    torch.save({}, empty)
    original = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, state, *a, **k: None  # keep the random init
    try:
        torch.manual_seed(0)
        network = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty)
        )
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original
    state = network.state_dict()
    for name, value in state.items():
        if name.endswith("conv.weight"):  # variance-preserving, so features do not vanish over 90 layers
            torch.nn.init.kaiming_normal_(value, nonlinearity="relu")
    path = empty.parent / "inception-random.pth"
    torch.save(state, path)
    return path


@pytest.fixture
def offline_torch_hub(tmp_path):
    """An empty torch hub folder: no cached weights, and downloads fail (no network here)."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


# ---------------------------------------------------------------------------------------- pure metrics
def test_identical_frames_give_infinite_psnr_unit_ssim_and_infinite_moving_psnr():
    videos = torch.from_numpy(scene(views=1, frames=4)[0]).float() / 255
    assert torch.isinf(psnr_fn(videos, videos)).all()
    assert torch.allclose(ssim_fn(videos, videos), torch.ones(4), atol=1e-5)
    mask = moving_mask(videos, 0.04)
    assert 0 < int(mask.sum()) < mask.numel() // 4  # only the disc's path moves
    assert torch.isinf(masked_psnr(videos, videos, mask)).all()


def test_psnr_ssim_and_moving_psnr_fall_monotonically_with_shift_and_blur():
    truth = scene(views=1, frames=6)
    target = to_unit(truth[0])
    mask = moving_mask(target, 0.04)

    def scores(pred: np.ndarray):
        pred_t = to_unit(pred[0])
        return (
            float(psnr_fn(pred_t, target).mean()),
            float(ssim_fn(pred_t, target).mean()),
            float(masked_psnr(pred_t, target, mask).mean()),
        )

    for degrade, amounts in ((shifted, (1, 2, 4)), (blurred, (0.5, 1.0, 2.0))):
        results = [scores(degrade(truth, a)) for a in amounts]
        for metric in range(3):
            values = [r[metric] for r in results]
            assert values[0] > values[1] > values[2], (degrade.__name__, metric, values)


def test_composite_on_white_blends_alpha():
    rgba = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [100, 0, 0, 128]]], dtype=np.uint8)
    rgb = composite_on_white(rgba)
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 1].tolist() == [0, 0, 0]
    assert rgb[0, 2].tolist() == [177, 127, 127]  # 100 * 128/255 + 255 * 127/255


# ---------------------------------------------------------------------------------------- FVD
def test_fvd_clips_are_overlapping_windows_at_a_fixed_stride():
    assert fvd_module.clip_starts(32, 16, 4) == [0, 4, 8, 12, 16]
    assert fvd_module.clip_starts(30, 16, 4) == [0, 4, 8, 12]
    assert fvd_module.clip_starts(15, 16, 1) == []
    clips = fvd_module.view_clips(np.arange(20)[:, None, None, None].repeat(3, -1).astype(np.uint8), 16, 2)
    assert clips.shape == (3, 16, 1, 1, 3) and clips[2, 0, 0, 0, 0] == 4


def test_frechet_distance_is_zero_for_one_set_and_smaller_within_a_distribution_than_across():
    rng = np.random.default_rng(0)
    a, b = (torch.from_numpy(rng.normal(size=(300, 6))) for _ in range(2))
    c = torch.from_numpy(rng.normal(loc=0.7, size=(300, 6)))
    assert abs(fvd_module.frechet_distance(a, a)) < 1e-8
    assert fvd_module.frechet_distance(a, b) < 0.2 < fvd_module.frechet_distance(a, c)
    with pytest.raises(ValueError, match="at least 2"):
        fvd_module.frechet_distance(a[:1], b)  # the public script's one row per view


def test_fvd_is_zero_for_identical_videos_and_grows_with_the_shift():
    truth = scene(views=4, frames=20, size=32)
    value, clips = fvd_module.fvd(PooledPixels(), truth, truth, stride=2, size=32)
    assert clips == 4 * 3 and abs(value) < 1e-4  # square root of a rank-deficient covariance, in float64
    shifts = [fvd_module.fvd(PooledPixels(), shifted(truth, s), truth, stride=2, size=32)[0] for s in (1, 3, 6)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]


def test_fvd_of_clip_sets_from_one_distribution_is_below_that_of_two_distributions():
    def clip_set(seed: int, brightness: float = 1.0) -> np.ndarray:
        """48 clips of 12 objects of random texture and speed; ``brightness`` < 1 darkens them all."""
        videos = [scene(views=2, frames=18, size=32, seed=seed + i, speed=1 + i % 3) for i in range(12)]
        return (np.concatenate(videos) * brightness).astype(np.uint8)

    first, second, darker = clip_set(0), clip_set(100), clip_set(0, 0.9)
    same = fvd_module.fvd(PooledPixels(grid=2), first, second, stride=2, size=32)[0]
    different = fvd_module.fvd(PooledPixels(grid=2), first, darker, stride=2, size=32)[0]
    assert 0 < same < different / 2


def test_fvd_through_cdfvd_i3d_loaded_from_i3d_weights_is_zero_for_identical_videos(random_i3d):
    i3d = fvd_module.load_i3d(random_i3d)
    truth = scene(views=1, frames=17, size=32)
    # fvd() in two steps, to look at the features too
    features = [fvd_module.clip_features(i3d, videos, stride=1) for videos in (truth, truth.copy())]
    assert features[0].shape == (2, 400) and float((features[0][0] - features[0][1]).abs().max()) > 0
    value = fvd_module.frechet_distance(*features)
    assert abs(value) < 1e-4 * float(features[0].var(dim=0).sum()) + 1e-9


def test_i3d_weights_missing_or_wrong_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(fvd_module, "default_i3d_path", lambda: None)
    with pytest.raises(MetricUnavailable, match="--i3d PATH"):
        fvd_module.load_i3d(None)
    pickled = tmp_path / "pickled.pt"
    torch.save({"weights": fractions.Fraction(1, 3)}, pickled)  # any object: unpickling it could run code
    with pytest.raises(UserError, match="pickled.pt: not a PyTorch weights file"):
        fvd_module.load_i3d(pickled)
    wrong = tmp_path / "not_i3d.pt"
    torch.save({"weight": torch.zeros(2)}, wrong)
    with pytest.raises(Exception, match="not_i3d.pt: not the 400-class I3D"):
        fvd_module.load_i3d(wrong)


# ---------------------------------------------------------------------------------------- FID-VID
def test_fid_vid_is_zero_for_identical_views_and_grows_with_the_shift():
    truth = scene(views=4, frames=3, size=32)
    fid = FidVid.load(feature=PooledPixels())
    same = fid.per_frame(truth, truth).abs().max()
    values = [float(fid.per_frame(shifted(truth, s), truth).mean()) for s in (1, 3, 6)]
    assert 0 < values[0] < values[1] < values[2]
    assert same < 1e-5 * values[0]  # torchmetrics' float64 eigenvalues of a rank-3 product: zero up to rounding


def test_fid_vid_loads_the_fid_inception_from_inception_weights(random_inception):
    # FID's arithmetic is tested above on a stand-in network: torchmetrics' compute takes an eigen-decomposition
    # of a 2048 x 2048 matrix per frame, half a minute on these CPUs; here the real network, loaded from the flag
    fid = FidVid.load(inception=random_inception)
    frames = torch.from_numpy(scene(views=2, frames=1, size=32)[:, 0]).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        features = fid.metric.inception(frames)
    assert features.shape == (2, 2048) and float((features[0] - features[1]).abs().max()) > 0


# ---------------------------------------------------------------------------------------- CLIP, LPIPS
def test_clip_similarity_of_a_tiny_clip_is_one_for_identical_frames(tiny_clip):
    clip = ClipSimilarity.load(str(tiny_clip))
    truth = scene(views=1, frames=3, size=32)[0]
    assert torch.allclose(clip(truth, truth), torch.ones(3), atol=1e-5)
    assert float(clip(np.full_like(truth, 0), truth).max()) < 0.9999


def test_missing_clip_and_lpips_weights_are_unavailable_naming_their_flags(offline_torch_hub):
    with pytest.raises(MetricUnavailable, match="--clip-model"):
        ClipSimilarity.load("openai/clip-vit-base-patch32")
    with pytest.raises(MetricUnavailable, match="--vgg16 PATH"):
        LpipsVgg.load(None)
    with pytest.raises(MetricUnavailable, match="--inception PATH"):
        FidVid.load(None)


# ---------------------------------------------------------------------------------------- ds4d-eval videos
def _videos(pred: Path, gt: Path, out: Path, **kwargs):
    return eval_script.EvalVideos(pred=pred, gt=gt, output_dir=out, **kwargs).main()


def test_identical_renders_score_perfectly_through_the_real_loaders(tmp_path, tiny_clip, random_vgg16):
    truth = scene(views=4, frames=5, size=40)
    gt, pred = write_views(tmp_path / "gt", truth), write_views(tmp_path / "pred", truth, video_files=False)
    summary, table = _videos(
        pred,
        gt,
        tmp_path / "out",
        resolution=40,
        metrics=("psnr", "ssim", "lpips", "clip", "psnr_moving"),
        clip_model=str(tiny_clip),
        vgg16=random_vgg16,
    )
    report = json.loads(summary.read_text())
    means = report["means"]
    assert means["psnr"] == "inf" and means["psnr_moving"] == "inf" and float(means["psnr"]) == float("inf")
    assert means["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert means["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert means["clip"] == pytest.approx(1.0, abs=1e-5)
    assert report["counts"]["views"] == 4 and report["counts"]["frames"] == 5
    assert report["unavailable"] == {"fvd": "not requested (--metrics)", "fid_vid": "not requested (--metrics)"}
    assert report["versions"]["cd-fvd"] != "not installed" and report["settings"]["resolution"] == 40
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 20 and rows[0]["view"] == "eval_0" and rows[0]["psnr"] == "inf"


def test_videos_reads_mp4s_and_rgba_frames_composited_on_white(tmp_path):
    truth = scene(views=4, frames=4, size=48)
    rgba = np.concatenate([truth, np.full(truth.shape[:-1] + (1,), 255, dtype=np.uint8)], axis=-1)
    rgba[..., :3, :, :] = 0  # a transparent black strip: black, not white, it would cost PSNR 12 dB at most
    gt = write_views(tmp_path / "gt", rgba)
    pred = write_views(tmp_path / "pred", truth, video_files=True)
    summary, _ = _videos(pred, gt, tmp_path / "out", resolution=48, metrics=("psnr", "ssim"))
    report = json.loads(summary.read_text())
    assert 25.0 < report["means"]["psnr"] < 80.0  # H.264 at crf 18 with 4:2:0 chroma: close, not exact
    assert report["per_view"]["eval_3"]["ssim"] > 0.9


def test_missing_weights_are_reported_unavailable_with_the_flag_never_scored(tmp_path, offline_torch_hub, monkeypatch):
    monkeypatch.setattr(fvd_module, "default_i3d_path", lambda: None)
    truth = scene(views=2, frames=17, size=32)
    names = ("a", "b")
    gt, pred = write_views(tmp_path / "gt", truth, names), write_views(tmp_path / "pred", truth, names)
    summary, _ = _videos(pred, gt, tmp_path / "out", resolution=32, views=names)
    report = json.loads(summary.read_text())
    for metric, flag in (("lpips", "--vgg16"), ("clip", "--clip-model"), ("fvd", "--i3d"), ("fid_vid", "--inception")):
        assert report["means"][metric] is None and flag in report["unavailable"][metric]
    assert report["means"]["psnr"] == "inf" and report["means"]["ssim"] == pytest.approx(1.0, abs=1e-5)


def test_scores_with_stand_in_networks_cover_fvd_and_fid_vid():
    truth = scene(views=4, frames=18, size=32)
    scorers = Scorers(i3d=PooledPixels(), fid=FidVid.load(feature=PooledPixels()), i3d_input_size=32)
    options = MetricOptions(resolution=32, metrics=("psnr", "fvd", "fid_vid"), fvd_stride=2)
    same = score_views(view_set(truth), view_set(truth), scorers, options)
    worse = score_views(view_set(shifted(truth, 3)), view_set(truth), scorers, options)
    assert (
        abs(same.means["fvd"]) < 1e-4 * worse.means["fvd"]
        and abs(same.means["fid_vid"]) < 1e-4 * worse.means["fid_vid"]
    )
    assert worse.means["fvd"] > 0 and worse.means["fid_vid"] > 0 and worse.means["psnr"] < 40
    assert same.counts["fvd_clips_per_set"] == 4 * 2 and same.counts["fvd_frames_unused_per_view"] == 0
    assert len(same.fid_per_frame) == 18


def _views_of_different_lengths(root: Path, truth: np.ndarray) -> None:
    """A view set whose eval_1 is shorter than the other views."""
    write_views(root, truth)
    shutil.rmtree(root / "eval_1")
    write_views(root, truth[1:2, :2], ("eval_1",))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root, truth: write_views(root, truth, ("view0", "view1", "view2", "view3")), "no view named eval_0"),
        (lambda root, truth: write_views(root, truth[:2], NAMES[:2]), "lacks the views eval_2, eval_3"),
        (lambda root, truth: write_views(root, truth[:, :3]), "3 frames, but --gt"),
        (_views_of_different_lengths, "different frame counts"),
        (lambda root, truth: (root / "eval_0").mkdir(parents=True), "no such folder"),
    ],
    ids=[
        "wrong names",
        "missing views",
        "fewer frames than the ground truth",
        "views of different lengths",
        "no folder",
    ],
)
def test_videos_refuses_bad_view_folders_naming_the_folder(tmp_path, make, message):
    truth = scene(views=4, frames=4, size=32)
    gt = write_views(tmp_path / "gt", truth)
    pred = tmp_path / "pred"
    make(pred, truth)
    given = pred if message != "no such folder" else tmp_path / "absent"
    with pytest.raises(ViewSetError, match=message) as raised:
        _videos(given, gt, tmp_path / "out", resolution=32, metrics=("psnr",))
    assert str(given) in str(raised.value)
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_the_entry_point_reports_a_bad_folder_in_one_line_with_status_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    gt = write_views(tmp_path / "gt", scene(views=4, frames=2, size=32))
    monkeypatch.setattr(
        sys, "argv", ["ds4d-eval", "videos", "--pred", str(tmp_path / "gt" / "eval_0"), "--gt", str(gt)]
    )
    with pytest.raises(SystemExit) as raised:
        eval_script.entrypoint()
    assert raised.value.code == 2
    assert "Traceback" not in capsys.readouterr().out


def test_videos_output_folder_follows_the_output_rules(tmp_path):
    truth = scene(views=4, frames=2, size=32)
    gt = write_views(tmp_path / "gt", truth)
    out = tmp_path / "out"
    _videos(gt, gt, out, resolution=32, metrics=("psnr",))
    _videos(gt, gt, out, resolution=32, metrics=("ssim",))  # a rerun replaces its own files
    assert json.loads((out / "metrics.json").read_text())["means"]["psnr"] is None
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="notes.txt"):
        _videos(gt, gt, out, resolution=32, metrics=("psnr",))
    with pytest.raises(Exception, match="holds the input"):
        _videos(gt, gt, tmp_path, resolution=32, metrics=("psnr",), force=True)


# ---------------------------------------------------------------------------------------- ds4d-eval model
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A ds4d run trained 1 + 2 steps on a 4-frame ds4d-synth scene at 32 px; returns its config.yml."""
    from ds4d_ns.method_configs.ds4d_config import make_ds4d_config
    from ds4d_ns.scripts.synth import SynthConfig
    from ds4d_ns.scripts.synth import main as synth_main

    root = tmp_path_factory.mktemp("trained")
    synth_main(SynthConfig(output=root / "data", scene="windmill", frames=4, resolution=32, steps=20, num_points=200))
    config = make_ds4d_config(
        method_name="ds4d-cpu", static_steps=1, dynamic_steps=2, cpu=True, priors=False, frame_features="none"
    )
    config.output_dir, config.experiment_name, config.timestamp = root / "outputs", "tiny", "run"
    config.vis, config.steps_per_eval_image, config.steps_per_eval_all_images = "tensorboard", 10_000, 10_000
    config.pipeline.datamanager.data = root / "data"
    ds4d_parts(config)[1].eval_lpips = False
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return config.get_base_dir() / "config.yml"


def test_model_renders_every_eval_view_at_every_frame_time_and_scores_it(trained_run):
    summary, table = eval_script.EvalModel(
        load_config=trained_run, resolution=32, metrics=("psnr", "ssim", "psnr_moving")
    ).main()
    assert summary.parent == trained_run.parent / "ds4d-eval"
    report = json.loads(summary.read_text())
    assert report["mode"] == "model" and report["counts"] == {
        "views": 4,
        "frames": 4,
        "moving_pixel_share": report["counts"]["moving_pixel_share"],
    }
    azimuths = [report["views"][name]["azimuth_deg"] for name in NAMES]
    assert azimuths == pytest.approx([-75.0, 15.0, 105.0, 195.0 - 360.0], abs=1e-3)
    assert all(report["views"][name]["fovy_deg"] == pytest.approx(49.1, abs=0.01) for name in NAMES)
    assert report["times"] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert 5.0 < report["means"]["psnr"] < 60.0 and 0.0 < report["means"]["ssim"] < 1.0
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 16 and {row["view"] for row in rows} == set(NAMES)
    assert np.mean([float(r["psnr"]) for r in rows]) == pytest.approx(report["means"]["psnr"], rel=1e-6)


def test_model_renders_are_those_of_the_named_view_and_time(trained_run):
    from ds4d_ns.evaluation.videos import read_dataset_eval_views
    from ds4d_ns.rendering.orbit_cameras import orbit_cameras
    from ds4d_ns.scripts.loading import load_trained_model

    model, _, run = load_trained_model(trained_run)
    evaluation = read_dataset_eval_views(run.dataset, 32)
    rendered = eval_script.render_eval_views(model, evaluation, 32)
    assert rendered.frames.shape == (4, 4, 32, 32, 3) and rendered.names == NAMES
    with torch.no_grad():
        outputs = model.get_outputs(orbit_cameras([15.0], [2 / 3], resolution=32).to(model.device))
    on_white = outputs["rgb"] + (1 - outputs["accumulation"]) * (1 - outputs["background"].view(-1)[:3])
    expected = (on_white[0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    assert np.abs(rendered.frames[1, 2].astype(int) - expected.astype(int)).max() <= 1  # eval_1: azimuth 15, t 2/3
    assert np.abs(rendered.frames[2, 2].astype(int) - expected.astype(int)).max() > 1


def test_model_scores_against_another_dataset_and_refuses_one_without_eval_views(trained_run, tmp_path):
    data = trained_run.parents[4] / "data"
    copy = tmp_path / "clean"
    shutil.copytree(data, copy)
    summary, _ = eval_script.EvalModel(
        load_config=trained_run, data=copy, output_dir=tmp_path / "out", resolution=32, metrics=("psnr",)
    ).main()
    assert json.loads(summary.read_text())["data"] == str(copy)

    meta = json.loads((copy / "transforms.json").read_text())
    meta["frames"] = [f for f in meta["frames"] if f["role"] != "eval"]
    (copy / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="no eval views"):
        eval_script.EvalModel(
            load_config=trained_run, data=copy, output_dir=tmp_path / "out2", metrics=("psnr",)
        ).main()
    assert not (tmp_path / "out2").exists()
