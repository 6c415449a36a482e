"""``ds4d-render``: the videos people ask of a 4D asset.

* ``ds4d-render orbit``: a 360-degree orbit at one time.
* ``ds4d-render views``: front, right, back and left videos over the whole clip (azimuths 0, 90,
  180, 270; "right" is the camera to the right of the front camera).

``ns-render camera-path`` (with ``render_time`` per keyframe) and ``ns-render spiral`` also work
on ds4d runs; these two cover the common cases without authoring a camera path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np
import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import track
from typing_extensions import Annotated

from ds4d_ns import views
from ds4d_ns.io.video import write_video_atomic
from ds4d_ns.rendering.orbit_cameras import orbit_cameras
from ds4d_ns.scripts.loading import load_trained_pipeline

NAMED_AZIMUTHS: Dict[str, float] = {"front": 0.0, "right": 90.0, "back": 180.0, "left": 270.0}
"""Azimuth of each named view (see ``ds4d_ns.views`` for the convention)."""


@dataclass
class _RenderOptions:
    load_config: Path
    """config.yml of a trained ds4d run."""
    output_dir: Path = Path("renders")
    """Folder the videos are written to (created if missing)."""
    resolution: int = 512
    """Width and height of the square videos in pixels."""
    elevation_deg: float = 0.0
    """Camera elevation in degrees."""
    radius: float = views.INPUT_RADIUS
    """Camera distance from the object centre."""
    fov_deg: float = views.INPUT_FOVY_DEG
    """Field of view in degrees."""
    fps: int = 30
    """Frames per second of the videos."""
    batch_size: int = 8
    """Cameras rendered per call of the model."""


@dataclass
class RenderOrbit(_RenderOptions):
    """A 360-degree orbit at one time."""

    time: float = 0.5
    """Time of the clip in [0, 1] at which the object is frozen."""
    num_frames: int = 120
    """Frames of the orbit."""

    def main(self) -> List[Path]:
        if not 0.0 <= self.time <= 1.0:
            raise ValueError(f"--time must lie in [0, 1], got {self.time}")
        azimuths = np.linspace(0.0, 360.0, self.num_frames, endpoint=False).tolist()
        pipeline, _ = load_trained_pipeline(self.load_config)
        path = self.output_dir / f"orbit_t{self.time:.3f}.mp4"
        frames = _render(pipeline, self, list(zip(azimuths, [self.time] * len(azimuths))), "orbit")
        write_video_atomic(path, frames, fps=self.fps)
        CONSOLE.log(f"wrote {path}")
        return [path]


@dataclass
class RenderViews(_RenderOptions):
    """Fixed front, right, back and left cameras over the whole clip."""

    num_times: int = 60
    """Time steps sampled uniformly over [0, 1]."""
    view_names: Tuple[str, ...] = ("front", "right", "back", "left")
    """Which named views to render (front, right, back, left)."""

    def main(self) -> List[Path]:
        unknown = [name for name in self.view_names if name not in NAMED_AZIMUTHS]
        if unknown:
            raise ValueError(f"unknown view names {unknown}; choose from {list(NAMED_AZIMUTHS)}")
        pipeline, _ = load_trained_pipeline(self.load_config)
        times = np.linspace(0.0, 1.0, self.num_times).tolist()
        written = []
        for name in self.view_names:
            path = self.output_dir / f"{name}.mp4"
            frames = _render(pipeline, self, [(NAMED_AZIMUTHS[name], t) for t in times], name)
            write_video_atomic(path, frames, fps=self.fps)
            CONSOLE.log(f"wrote {path}")
            written.append(path)
        return written


@torch.no_grad()
def _render(
    pipeline, options: _RenderOptions, poses: Sequence[Tuple[float, float]], label: str
) -> Iterator[np.ndarray]:
    """Frames of (azimuth, time) poses, rendered in batches."""
    model = pipeline.model
    for start in track(range(0, len(poses), options.batch_size), description=f"rendering {label}"):
        chunk = poses[start : start + options.batch_size]
        cameras = orbit_cameras(
            [az for az, _ in chunk],
            [t for _, t in chunk],
            elevation_deg=options.elevation_deg,
            radius=options.radius,
            fov_deg=options.fov_deg,
            resolution=options.resolution,
        ).to(model.device)
        rgb = model.get_outputs(cameras)["rgb"]
        for image in (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy():
            yield image


Commands = Union[
    Annotated[RenderOrbit, tyro.conf.subcommand(name="orbit")],
    Annotated[RenderViews, tyro.conf.subcommand(name="views")],
]


def entrypoint() -> None:
    """Console entry point of ``ds4d-render``."""
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(Commands).main()


if __name__ == "__main__":
    entrypoint()
