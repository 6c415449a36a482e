"""Shared fixtures. No test may reach a model hub: the offline switches are set before any import."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ds4d_ns import camera_layouts  # noqa: E402
from ds4d_ns.data.dataset_format import PLY_NAME, view_layout, write_dataset  # noqa: E402
from ds4d_ns.io.writers import write_ply_points_atomic, write_png_atomic  # noqa: E402
from ds4d_ns.options import Zero123PlusRelease  # noqa: E402

if TYPE_CHECKING:  # annotations only: the model and trainer modules are imported where used
    from nerfstudio.engine.trainer import TrainerConfig

    from ds4d_ns.data.datamanager import Ds4dDatamanagerConfig
    from ds4d_ns.ds4d_model import Ds4dModelConfig
    from ds4d_ns.features.feature_bank import FeatureBank
    from ds4d_ns.options import FusionMode


def ds4d_parts(config: TrainerConfig) -> Tuple[Ds4dDatamanagerConfig, Ds4dModelConfig]:
    """The datamanager and model configs of a ds4d method config, as their own classes (nerfstudio's
    ``TrainerConfig`` declares its pipeline's parts with their base classes)."""
    from ds4d_ns.data.datamanager import Ds4dDatamanagerConfig
    from ds4d_ns.ds4d_model import Ds4dModelConfig

    datamanager, model = config.pipeline.datamanager, config.pipeline.model
    assert isinstance(datamanager, Ds4dDatamanagerConfig) and isinstance(model, Ds4dModelConfig)
    return datamanager, model


def moving_cameras_feature_bank(fusion: "FusionMode", out_dim: int) -> "FeatureBank":
    """Four frames (times 0, 0.3, 0.7, 1) of three 16 px views (focal 10 px) whose cameras move from frame to
    frame, so which views see a point changes with the frame; random maps of 5 channels (wider than
    ``out_dim`` makes a learned reduction). Points near (0, 0, 1.5) are seen by some views, not all."""
    import torch

    from ds4d_ns.features.feature_bank import FeatureBank, FrameFeaturesConfig

    generator = torch.Generator().manual_seed(0)
    frames, num_views, channels, size = 4, 3, 5, 16
    viewmats = torch.eye(4).repeat(frames, num_views, 1, 1)
    viewmats[..., :3, 3] = 0.6 * torch.randn(frames, num_views, 3, generator=generator)
    viewmats[..., 2, 3] = viewmats[..., 2, 3].abs() * 0.2
    intrinsics = torch.tensor([[10.0, 0.0, 8.0], [0.0, 10.0, 8.0], [0.0, 0.0, 1.0]])
    return FeatureBank(
        config=FrameFeaturesConfig(mode="dsfd", fusion=fusion, dim=out_dim),
        maps=torch.randn(frames, num_views, channels, 4, 4, generator=generator),
        dynamic_magnitude=torch.zeros(frames, num_views, 4, 4),
        times=torch.tensor([0.0, 0.3, 0.7, 1.0]),
        viewmats=viewmats,
        intrinsics=intrinsics.expand(frames, num_views, 3, 3).clone(),
        width=size,
        height=size,
        front_view=1,
    )


def write_fake_dataset(
    root: Path,
    frames: int = 3,
    size: int = 16,
    pseudo_views: int = 2,
    eval_views: int = 1,
    use_masks: bool = False,
    with_ply: bool = True,
    seed: int = 0,
) -> Path:
    """A small valid dataset of random images on the real view layout."""
    rng = np.random.default_rng(seed)
    layout = view_layout(
        camera_layouts.zero123pp_v12_views()[:pseudo_views], camera_layouts.consistent4d_eval_views()[:eval_views]
    )
    for frame in range(frames):
        for view in layout:
            rgba = rng.integers(0, 256, size=(size, size, 4), dtype=np.uint8)
            if use_masks:
                write_png_atomic(root / view.mask_path(frame), rgba[..., 3])
                rgba = rgba[..., :3]
            write_png_atomic(root / view.image_path(frame), rgba)
    if with_ply:
        points = rng.uniform(-0.4, 0.4, size=(64, 3)).astype(np.float32)
        write_ply_points_atomic(root / PLY_NAME, points, rng.integers(0, 256, size=(64, 3), dtype=np.uint8))
    write_dataset(root, layout, frames, size, initial_points=with_ply, masks=use_masks)
    return root


def projected_grids(
    input_alphas: List[np.ndarray],
    release: Zero123PlusRelease = "v1.1",
    tile: int = 64,
    depth: float = 0.35,
    resolution: int = 64,
) -> List[np.ndarray]:
    """Zero123++-style RGBA grids (3 rows x 2 columns of tiles) that agree with the given input views.

    Each input silhouette (square alpha in [0, 1], framed as the generator saw it) is turned into a
    known object: the voxels that project inside it from the input camera and lie within
    ``depth`` x its half-extent of the image plane through the origin (a slab). The object's six
    silhouettes from the release's cameras are drawn as opaque tiles (colour varies with the frame)
    on transparent ground, in the release's tile order. The object is a grid of ``resolution``^3 voxels.
    """
    import torch

    from ds4d_ns.fields.tssf import project_points
    from ds4d_ns.process.framing import foreground_box, reached_fill
    from ds4d_ns.process.view_agreement import hull_silhouette, orbit_cameras
    from ds4d_ns.process.visual_hull import VoxelHull, voxel_centres

    grids = []
    for k, alpha in enumerate(input_alphas):
        size = alpha.shape[0]
        box = foreground_box(alpha)
        assert box is not None, f"input view {k} has no foreground"
        half = camera_layouts.object_half_extent(reached_fill(box, (0, 0, size, size)))
        centres = voxel_centres(1.5 * half, resolution)
        viewmat, intrinsics = orbit_cameras([camera_layouts.input_view()], size)
        pixels, inside = project_points(centres.reshape(-1, 3), viewmat, intrinsics, size, size)
        columns = pixels[0, :, 0].floor().long().clamp(0, size - 1)
        rows = pixels[0, :, 1].floor().long().clamp(0, size - 1)
        seen = inside[0] & torch.from_numpy(alpha > 0.5)[rows, columns]
        slab = centres.reshape(-1, 3)[:, 1].abs() <= depth * half  # the input camera looks along +y
        hull = VoxelHull((seen & slab).reshape(resolution, resolution, resolution), centres)
        views = camera_layouts.zero123pp_views(release, half)
        viewmats, intrinsics = orbit_cameras(views, tile)
        grid = np.zeros((3 * tile, 2 * tile, 4), dtype=np.uint8)
        for view in range(6):
            row, column = divmod(view, 2)
            mask = hull_silhouette(hull, viewmats[view], intrinsics[view], tile, tile).numpy()
            cell = grid[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile]
            cell[mask] = (200, (30 + 4 * k) % 256, 40 + 30 * view, 255)
        grids.append(grid)
    return grids


def tiny_cpu_run(root: Path, num_gaussians: int, data: Optional[Path] = None):
    """A ``ds4d-cpu`` run folder under ``root`` (config saved, no checkpoint yet) and its model on the CPU, with
    ``num_gaussians`` Gaussians for the caller to set; :func:`save_run_checkpoint` then writes their values."""
    import torch
    from nerfstudio.data.scene_box import SceneBox

    from ds4d_ns.method_configs.ds4d_config import make_ds4d_config

    if data is None:
        data = root / "data"
        data.mkdir(parents=True, exist_ok=True)
    config = make_ds4d_config(
        method_name="ds4d-cpu", static_steps=1, dynamic_steps=1, cpu=True, priors=False, frame_features="none"
    )
    config.output_dir, config.experiment_name, config.timestamp = root / "outputs", "tiny", "run"
    config.pipeline.datamanager.data = data
    ds4d_parts(config)[1].num_random = num_gaussians
    config.save_config()
    model = config.pipeline.model.setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])),
        num_train_data=0,
        metadata={},
        device="cpu",
    )
    return config, model


def refused_export(argv: List[str], monkeypatch, capsys) -> str:
    """Run ``ds4d-export`` with ``argv`` (after the program name), assert it exits with status 2, and return
    what it printed (stdout and stderr, stripped)."""
    import sys

    from ds4d_ns.scripts import export

    monkeypatch.setattr(sys, "argv", ["ds4d-export", *argv])
    with pytest.raises(SystemExit) as stopped:
        export.entrypoint()
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    return (captured.out + captured.err).strip()


def save_run_checkpoint(config, model, gaussians: Dict[str, Any]) -> Path:
    """Set ``model``'s Gaussian parameters to ``gaussians`` (splatfacto's names, arrays or tensors), save them as
    the run's step-2 checkpoint, and return the run's config.yml."""
    import torch

    from ds4d_ns.io.checkpoints import save_checkpoint_atomic

    with torch.no_grad():
        for name, values in gaussians.items():
            model.gauss_params[name].copy_(torch.as_tensor(np.array(values), dtype=torch.float32))
    weights = {f"_model.{key}": value for key, value in model.state_dict().items()}
    save_checkpoint_atomic({"step": 2, "pipeline": weights}, config.get_checkpoint_dir() / "step-000000002.ckpt")
    return config.get_base_dir() / "config.yml"


@pytest.fixture
def fake_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a fake dataset into a fresh folder under ``tmp_path``."""
    counter = iter(range(1000))

    def make(**kwargs) -> Path:
        return write_fake_dataset(tmp_path / f"data{next(counter)}", **kwargs)

    return make


@pytest.fixture(autouse=True)
def fresh_nerfstudio_event_writers():
    """Forget nerfstudio's event writers after each test.

    nerfstudio keeps them in module globals and every trainer set-up appends more; a writer of an
    earlier training (its log folder since deleted, or relative to a folder the test has left) would
    then fail every later training in the same process at its first flush.
    """
    yield
    import sys

    if "nerfstudio.utils.writer" in sys.modules:  # only tests that trained have writers to forget
        from ds4d_ns.trainer import forget_event_writers

        forget_event_writers()


@pytest.fixture(scope="session", autouse=True)
def isolated_feature_cache(tmp_path_factory) -> Path:
    """Frame-feature caches of the tests go to a temporary folder, never the user's cache."""
    cache = tmp_path_factory.mktemp("ds4d_cache")
    os.environ["DS4D_CACHE_DIR"] = str(cache)
    return cache


def save_tiny_dinov2(folder: Path, hidden_size: int = 16, seed: int = 0) -> Path:
    """A DINOv2 of the real architecture with random weights and tiny sizes, saved like a hub snapshot."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(
        hidden_size=hidden_size, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, patch_size=14, image_size=56
    )
    Dinov2Model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory) -> Path:
    """Folder of a tiny random DINOv2, usable as ``feature_extractor.model_id``."""
    return save_tiny_dinov2(tmp_path_factory.mktemp("tiny_dinov2"))


def _save_tiny_unet_and_vae(folder: Path, unet_in_channels: int) -> None:
    """The UNet and VAE layout that Zero123 and Zero123++ share, tiny, saved in ``folder``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    UNet2DConditionModel(
        sample_size=8,
        in_channels=unet_in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    ).save_pretrained(folder / "unet")
    AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
    ).save_pretrained(folder / "vae")


def _save_tiny_clip_vision(folder: Path) -> None:
    """A tiny CLIP image encoder with projection, saved in ``folder``."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            patch_size=14,
            image_size=28,
            projection_dim=16,
        )
    ).save_pretrained(folder)


def save_tiny_zero123(folder: Path, seed: int = 0) -> Path:
    """Zero123 parts of the real classes with tiny sizes, saved in the diffusers layout of
    ``ashawkey/zero123-xl-diffusers`` (one subfolder per part)."""
    import torch
    from diffusers import DDIMScheduler

    from ds4d_ns.guidance.zero123 import (
        CLIP_IMAGE_PROCESSOR,
        CLIP_PROCESSOR_SUBFOLDER,
        _camera_projection_class,
        clip_image_processor_class,
    )

    torch.manual_seed(seed)
    _save_tiny_unet_and_vae(folder, unet_in_channels=8)
    _save_tiny_clip_vision(folder / "image_encoder")
    tiny_sizes = {"size": {"shortest_edge": 28}, "crop_size": {"height": 28, "width": 28}}  # the tiny encoder's
    processor = clip_image_processor_class()(**{**CLIP_IMAGE_PROCESSOR, **tiny_sizes})
    processor.save_pretrained(folder / CLIP_PROCESSOR_SUBFOLDER)
    _camera_projection_class()(embedding_dim=16, additional_embeddings=4).save_pretrained(
        folder / "clip_camera_projection"
    )
    DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False).save_pretrained(
        folder / "scheduler"
    )
    return folder


@pytest.fixture(scope="session")
def tiny_zero123(tmp_path_factory) -> Path:
    """Folder of a tiny random Zero123, usable as ``sds.model_id``."""
    return save_tiny_zero123(tmp_path_factory.mktemp("tiny_zero123"))


def save_tiny_zero123plus(folder: Path, seed: int = 0) -> Path:
    """Zero123++ parts of the real classes with tiny sizes, in the release's folder layout."""
    import json

    import torch
    from diffusers import EulerAncestralDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from ds4d_ns.process.zero123plus import _offline_tokenizer

    torch.manual_seed(seed)
    _save_tiny_unet_and_vae(folder, unet_in_channels=4)
    CLIPTextModel(
        CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=8)
    ).save_pretrained(folder / "text_encoder")
    _offline_tokenizer(CLIPTokenizer).save_pretrained(folder / "tokenizer")
    _save_tiny_clip_vision(folder / "vision_encoder")
    EulerAncestralDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction"
    ).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"ramping_coefficients": [i / 76 for i in range(77)]}))
    save_zero123plus_processors(folder, vae_size=32, clip_size=28)  # sizes of the tiny VAE and CLIP
    return folder


def save_zero123plus_processors(folder: Path, vae_size: int = 512, clip_size: int = 224) -> Path:
    """The release's two image processors as its ``preprocessor_config.json`` files give them (the default
    sizes are the release's; tiny models need smaller ones)."""
    import json

    def config(size: int, resample: int, mean: list, std: list) -> dict:
        return {
            "crop_size": {"height": size, "width": size},
            "do_center_crop": True,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor",
            "image_mean": mean,
            "image_processor_type": "CLIPImageProcessor",
            "image_std": std,
            "resample": resample,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": size},
        }

    clip_mean, clip_std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    for name, content in (
        ("feature_extractor_vae", config(vae_size, 2, [0.5, 0.5, 0.5], [0.8, 0.8, 0.8])),
        ("feature_extractor_clip", config(clip_size, 3, clip_mean, clip_std)),
    ):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "preprocessor_config.json").write_text(json.dumps(content, indent=2))
    return folder


@pytest.fixture(scope="session")
def tiny_zero123plus(tmp_path_factory) -> Path:
    """Folder of a tiny random Zero123++, usable as ``Zero123PlusConfig.model_id``."""
    return save_tiny_zero123plus(tmp_path_factory.mktemp("tiny_zero123plus"))


def emulated_graph_capture(module, samples, allow_unused_input: bool = False):
    """``torch.cuda.make_graphed_callables``'s contract, emulated on the CPU (no CUDA graph is made).

    What a caller of a captured graph must live with, reproduced so that a CPU training run exposes misuse:
    the outputs are views of memory that the next call overwrites; the inputs are copied into the capture's
    own tensors; the gradients come back in the capture's own buffers (which autograd may adopt as a
    parameter's ``.grad``) and are overwritten by the next backward; and a backward must follow the latest
    forward (a graph's backward reads the activations its forward left in static memory, so a second forward
    before the first backward would corrupt it): that raises here. Eager arithmetic otherwise.
    """
    import torch
    from torch.autograd.function import once_differentiable

    parameters = tuple(module.parameters())
    static_inputs = tuple(sample.detach().clone().requires_grad_(sample.requires_grad) for sample in samples)
    surface = static_inputs + parameters
    with torch.enable_grad():
        first = module(*static_inputs)
    static_outputs = tuple(output.detach().clone() for output in first)
    static_grads = [torch.zeros_like(t) if t.requires_grad else None for t in surface]
    calls = {"latest": 0}

    class Replay(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            with torch.no_grad():
                for static, value in zip(static_inputs, inputs[: len(static_inputs)]):
                    static.copy_(value)
            with torch.enable_grad():
                outputs = module(*static_inputs)
            calls["latest"] += 1
            ctx.call, ctx.outputs = calls["latest"], outputs
            with torch.no_grad():
                for static, output in zip(static_outputs, outputs):
                    static.copy_(output)
            return tuple(static.detach() for static in static_outputs)

        @staticmethod
        @once_differentiable
        def backward(ctx, *grads):
            if ctx.call != calls["latest"]:
                raise RuntimeError("a captured graph's backward ran after a later forward of the same graph")
            pairs = [(o, g) for o, g in zip(ctx.outputs, grads) if o.requires_grad and g is not None]
            targets = [t for t in surface if t.requires_grad]
            computed = iter(
                torch.autograd.grad(
                    [o for o, _ in pairs], targets, [g for _, g in pairs], allow_unused=allow_unused_input
                )
                if pairs
                else [None] * len(targets)
            )
            result = []
            for buffer in static_grads:
                value = None if buffer is None else next(computed)
                if buffer is None or value is None:
                    result.append(None)
                else:
                    buffer.copy_(value)
                    result.append(buffer.detach())
            return tuple(result)

    def replay(*user_args):
        return Replay.apply(*(user_args + parameters))

    return replay


class EmulatedInferenceGraph:
    """A ``torch.cuda.CUDAGraph`` stand-in for ``GraphedInference`` on the CPU: ``replay`` recomputes the
    function from the capture's own input tensors into the capture's own output tensors (what a replay does),
    so a caller that keeps an output past the next call sees it overwritten, as on a GPU."""

    def __init__(self, function, inputs, outputs) -> None:
        self.function, self.inputs, self.outputs = function, inputs, outputs

    def replay(self) -> None:
        import torch

        with torch.no_grad():
            for static, value in zip(self.outputs, self.function(*self.inputs)):
                static.copy_(value)


def emulated_inference_capture(self, args, key) -> None:
    """``GraphedInference._capture`` on the CPU: static inputs and outputs, an :class:`EmulatedInferenceGraph`."""
    self._graph, self._key, self._outputs = None, None, ()
    self._inputs = [a.detach().clone() for a in args]
    self._outputs = tuple(output.clone() for output in self.function(*self._inputs))
    self._graph = EmulatedInferenceGraph(self.function, self._inputs, self._outputs)
    self._key = key
    self.captures += 1


def dispatched_operations():
    """A context (``with dispatched_operations() as seen:``) that lists every aten operation dispatched inside it
    (``seen.operations``) and those that read a value back to the host or size a result by data
    (``seen.host_reads``: ``_local_scalar_dense``, what ``float()``, ``.item()`` and ``bool()`` of a tensor
    dispatch to, and ``nonzero``); either would stall a GPU step and break its CUDA-graph capture."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Seen(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.operations: List[str] = []

        @property
        def host_reads(self) -> List[str]:
            return [name for name in self.operations if "_local_scalar_dense" in name or "nonzero" in name]

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.operations.append(str(func))
            return func(*args, **(kwargs or {}))

    return Seen()
