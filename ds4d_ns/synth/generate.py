"""Render a procedural scene into the ds4d dataset format (the ``ds4d-synth`` sample dataset).

Per frame ``i`` of ``F`` (time ``i / (F - 1)``) the generator renders the input view, the six
Zero123++ pseudo views and the four Consistent4D evaluation views of ``ds4d_ns.camera_layouts``, writes
them as RGBA PNGs, and finally writes ``transforms.json`` and an ``init.ply`` point cloud sampled
on the middle frame's surface (standing in for a reconstruction model's points).

Pseudo views can be degraded (``pseudo_noise``) the way a multi-view generator degrades them:
blur, a per-view colour cast and small frame-to-frame jitter. Input and evaluation views always
stay clean: they are the observed video and the ground truth.

Output folders are guarded (``ds4d_ns.io.output_folder``): a folder is only written if it is
empty or holds an earlier run of the same settings (then the run resumes, skipping images already
on disk; every write is atomic, so an image on disk is complete). Every file written is listed in
the manifest first; ``force`` writes beside other files and replaces only files the manifest lists.
Nothing outside the output folder is touched.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from ds4d_ns import camera_layouts
from ds4d_ns.data.dataset_format import (
    PLY_NAME,
    TRANSFORMS_NAME,
    DatasetView,
    frame_time,
    middle_frame,
    view_layout,
    write_dataset,
)
from ds4d_ns.io.output_folder import prepare_output_dir
from ds4d_ns.io.writers import write_ply_points_atomic, write_png_atomic
from ds4d_ns.synth.raymarch import Rays, camera_rays, render_rays, sdf_gradient, shade
from ds4d_ns.synth.scenes import Scene, get_scene

GENERATOR_NAME = "ds4d-synth"
GENERATOR_VERSION = 2
"""Bump when the rendered bytes change for the same settings, so old folders are not resumed (2: init.ply
sampled on the dataset's middle frame, ``ds4d_ns.data.dataset_format.middle_frame``)."""
MANIFEST_NAME = "ds4d_synth.json"
"""Written first: identifies an output folder (complete or interrupted) and the settings that made it."""

PSEUDO_BLUR_SIGMA_PX = 1.5
"""Blur sigma at noise level 1, in pixels of a 256 px image (scaled with the resolution)."""
PSEUDO_GAIN_STD = 0.12
"""Per-view colour gain spread at level 1 (a generator's colour cast that persists over the video)."""
PSEUDO_OFFSET_STD = 0.04
"""Per-view colour offset spread at level 1."""
PSEUDO_JITTER_PX = 1.0
"""Per-frame image shift spread at level 1, in pixels of a 256 px image (temporal flicker)."""
PSEUDO_FRAME_GAIN_STD = 0.03
"""Per-frame colour gain spread at level 1 (temporal flicker in colour)."""


def dataset_views() -> Tuple[DatasetView, ...]:
    """The views rendered for every frame, in ``transforms.json`` order: input, pseudo, eval."""
    return view_layout(camera_layouts.zero123pp_v12_views(), camera_layouts.consistent4d_eval_views())


def view_rays(view: camera_layouts.OrbitView, resolution: int) -> Rays:
    """All pixel rays of a square ``resolution`` image from an orbit camera."""
    focal = camera_layouts.focal_from_fov(view.fov_deg, resolution)
    centre = resolution / 2.0
    return camera_rays(camera_layouts.orbit_c2w(view), focal, centre, centre, resolution, resolution)


def render_views(
    scene: Scene, t: float, orbits: Sequence[camera_layouts.OrbitView], resolution: int, steps: int
) -> Float[Tensor, "v h w 4"]:
    """Straight-alpha RGBA images of ``scene`` at time ``t``, all cameras traced as one batch."""
    rays = Rays.cat([view_rays(view, resolution) for view in orbits])
    return render_rays(scene, t, rays, steps).reshape(len(orbits), resolution, resolution, 4)


def gaussian_blur(image: Float[Tensor, "c h w"], sigma: float) -> Float[Tensor, "c h w"]:
    """Separable Gaussian blur with zero padding (zero = transparent for premultiplied RGBA)."""
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    out = F.conv2d(image[None], horizontal, padding=(0, radius), groups=channels)
    return F.conv2d(out, vertical, padding=(radius, 0), groups=channels)[0]


def shift_image(image: Float[Tensor, "c h w"], dx: float, dy: float) -> Float[Tensor, "c h w"]:
    """Translate content by (dx, dy) pixels (bilinear, zero fill)."""
    _, height, width = image.shape
    theta = torch.tensor([[[1.0, 0.0, -2.0 * dx / width], [0.0, 1.0, -2.0 * dy / height]]])
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def degrade_pseudo(
    image: Float[Tensor, "h w 4"], level: float, seed: int, view_index: int, frame_index: int
) -> Float[Tensor, "h w 4"]:
    """Degrade one pseudo view as a multi-view generator would; level 0 returns it unchanged.

    The colour cast depends only on (seed, view) because a generator's bias for a viewpoint is
    stable over a video; the blur width, shift and a small colour flicker also depend on the frame,
    which is the temporal inconsistency a 4D method has to average out. Alpha goes through the
    same blur and shift, so the silhouette stays consistent with the colour.
    """
    if level <= 0.0:
        return image
    scale = image.shape[0] / 256.0
    view_rng = np.random.default_rng([seed, 1, view_index])
    frame_rng = np.random.default_rng([seed, 2, view_index, frame_index])
    gain = 1.0 + level * PSEUDO_GAIN_STD * view_rng.standard_normal(3)
    offset = level * PSEUDO_OFFSET_STD * view_rng.standard_normal(3)
    gain = gain * (1.0 + level * PSEUDO_FRAME_GAIN_STD * frame_rng.standard_normal(3))
    dx, dy = level * PSEUDO_JITTER_PX * scale * frame_rng.standard_normal(2)
    sigma = level * PSEUDO_BLUR_SIGMA_PX * scale * (1.0 + 0.25 * frame_rng.uniform(-1.0, 1.0))

    # Blur and shift in premultiplied space, so the transparent background does not bleed black in.
    alpha = image[..., 3:]
    premultiplied = torch.cat([image[..., :3] * alpha, alpha], dim=-1).permute(2, 0, 1)
    premultiplied = shift_image(premultiplied, float(dx), float(dy))
    if sigma > 0.3:  # below that the kernel is a delta at pixel resolution
        premultiplied = gaussian_blur(premultiplied, float(sigma))
    premultiplied = premultiplied.permute(1, 2, 0)
    alpha = premultiplied[..., 3:].clamp(0.0, 1.0)
    colour = torch.where(alpha > 1e-4, premultiplied[..., :3] / alpha.clamp(min=1e-4), torch.zeros_like(alpha))
    colour = colour * torch.from_numpy(gain).float() + torch.from_numpy(offset).float()
    return torch.cat([colour.clamp(0.0, 1.0), alpha], dim=-1)


def to_uint8(image: Float[Tensor, "h w 4"]) -> np.ndarray:
    """Quantise straight RGBA to uint8, with black colour under fully transparent pixels."""
    quantised = (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()
    quantised[quantised[..., 3] == 0, :3] = 0
    return quantised


def to_uint8_rgb(colours: Float[Tensor, "n 3"]) -> np.ndarray:
    """Colours in [0, 1] as uint8 ``[n, 3]`` for the PLY file."""
    return (colours.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()


def sample_surface_points(
    scene: Scene, t: float, count: int, noise: float, seed: int, newton_steps: int = 6
) -> Tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"]]:
    """Points on the surface at time ``t`` with their lit colour, plus Gaussian position noise.

    Uniform samples in the bounding cube are pulled onto the zero level set by Newton steps
    (``x -= sdf * grad / |grad|^2``); those that did not converge are dropped. The colour is the
    shaded colour the images show, which is what a reconstruction model's points would carry.
    """
    generator = torch.Generator().manual_seed(seed)

    def distance(x: Tensor) -> Tensor:
        return scene.distance(x, t)

    kept: List[Tensor] = []
    total = 0
    for _ in range(50):  # each round keeps most candidates; the cap only guards against a broken scene
        x = (torch.rand(max(2 * count, 1024), 3, generator=generator) * 2.0 - 1.0) * scene.bound_radius
        for _ in range(newton_steps):
            grad = sdf_gradient(distance, x)
            x = x - distance(x)[:, None] * grad / (grad * grad).sum(dim=-1, keepdim=True).clamp(min=1e-6)
        good = (distance(x).abs() < 1e-3) & (x.norm(dim=-1) < scene.bound_radius)
        kept.append(x[good])
        total += int(good.sum())
        if total >= count:
            break
    points = torch.cat(kept)[:count]
    if points.shape[0] < count:
        raise RuntimeError(f"scene {scene.name!r}: only {points.shape[0]} of {count} surface points converged")
    colours = shade(scene, points, t)
    return points + noise * torch.randn(points.shape, generator=generator), colours


def generate_dataset(
    out: Path,
    scene: str = "windmill",
    frames: int = 30,
    resolution: int = 256,
    seed: int = 0,
    pseudo_noise: float = 0.0,
    num_points: int = 5000,
    point_noise: float = 0.01,
    steps: int = 80,
    force: bool = False,
) -> Path:
    """Write a complete dataset to ``out`` and return the path of its ``transforms.json``.

    See ``ds4d_ns.scripts.synth.SynthConfig`` for the meaning of each argument.
    """
    if frames < 1 or resolution < 8 or steps < 1 or num_points < 1:
        raise ValueError("frames, steps and num_points must be positive and resolution at least 8")
    if seed < 0 or pseudo_noise < 0.0 or point_noise < 0.0:
        raise ValueError("seed, pseudo_noise and point_noise must not be negative")
    the_scene = get_scene(scene)
    out = Path(out)
    settings = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "settings": {
            "scene": scene,
            "frames": frames,
            "resolution": resolution,
            "seed": seed,
            "pseudo_noise": pseudo_noise,
            "num_points": num_points,
            "point_noise": point_noise,
            "steps": steps,
        },
    }
    output = prepare_output_dir(out, MANIFEST_NAME, settings, force, GENERATOR_NAME)
    layout = dataset_views()
    planned = [view.image_path(f) for f in range(frames) for view in layout]
    output.check_can_write(planned + [PLY_NAME, TRANSFORMS_NAME])  # before any rendering
    resume = output.resume
    with output:  # every file written below is recorded in the manifest first
        CONSOLE.log(
            escape(
                f"ds4d-synth: scene {scene!r} ({the_scene.description}), {frames} frames at {resolution} px, "
                f"seed {seed}, pseudo noise {pseudo_noise} -> {out}" + (" (resuming)" if resume else "")
            )
        )

        started = time.perf_counter()
        skipped = 0
        progress = Progress(
            TextColumn("[bold blue]rendering"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=CONSOLE,
        )
        with progress:
            task = progress.add_task("frames", total=frames)
            for frame_index in range(frames):
                t = frame_time(frame_index, frames)
                paths = [view.image_path(frame_index) for view in layout]
                missing = [not (resume and (out / path).is_file()) for path in paths]
                if any(missing):
                    # Whole frames are rendered even when resuming: the ray batch is then exactly the
                    # one of an uninterrupted run, so the bytes match.
                    images = render_views(the_scene, t, [v.orbit for v in layout], resolution, steps)
                    for view, path, image, todo in zip(layout, paths, images, missing):
                        if not todo:
                            continue
                        if view.role == "pseudo":
                            image = degrade_pseudo(image, pseudo_noise, seed, view.view_index, frame_index)
                        write_png_atomic(out / path, to_uint8(image))
                skipped += missing.count(False)
                progress.advance(task)

        ply_frame = middle_frame(frames)
        ply_time = frame_time(ply_frame, frames)
        if not (resume and (out / PLY_NAME).is_file()):
            points, colours = sample_surface_points(the_scene, ply_time, num_points, point_noise, seed)
            write_ply_points_atomic(out / PLY_NAME, points.numpy(), to_uint8_rgb(colours))

        provenance = {
            "generator": GENERATOR_NAME,
            "generator_version": GENERATOR_VERSION,
            "scene": scene,
            "scene_description": the_scene.description,
            "seed": seed,
            "pseudo_noise": pseudo_noise,
            "num_frames": frames,
            "resolution": resolution,
            "ply_point_noise": point_noise,
        }
        write_dataset(out, layout, frames, resolution, initial_points=True, extra=provenance)
        elapsed = time.perf_counter() - started
        CONSOLE.log(
            f"ds4d-synth: wrote {frames * len(layout) - skipped} images ({skipped} reused) and {PLY_NAME} "
            f"in {elapsed:.1f} s"
        )
    return out / TRANSFORMS_NAME
