"""``ds4d-render``: the videos people ask of a 4D asset.

* ``ds4d-render orbit``: a 360-degree orbit at one time.
* ``ds4d-render views``: front, right, back and left videos over the whole clip (azimuths 0, 90,
  180, 270; "right" is the camera to the right of the front camera).

``ns-render camera-path`` (with ``render_time`` per keyframe) and ``ns-render spiral`` also work
on ds4d runs; these two cover the common cases without authoring a camera path. Both need only
the run's checkpoint. In the output folder each writes only its own videos, replacing its earlier
ones; it never writes over or deletes a file it did not write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np
import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.progress import track
from typing_extensions import Annotated

from ds4d_ns import camera_layouts
from ds4d_ns.errors import UserError, exit_on_user_error
from ds4d_ns.io.checkpoints import check_checkpoint_folder
from ds4d_ns.io.output_folder import prepare_output_dir
from ds4d_ns.io.video import write_video_atomic
from ds4d_ns.rendering.orbit_cameras import orbit_cameras
from ds4d_ns.scripts.loading import load_trained_model, require_at_least, resolve_run

TOOL = "ds4d-render"
MANIFEST_NAME = "ds4d_render.json"
"""Lists the videos this command wrote in its output folder (see ``ds4d_ns.io.output_folder``)."""

NAMED_AZIMUTHS: Dict[str, float] = {"front": 0.0, "right": 90.0, "back": 180.0, "left": 270.0}
"""Azimuth of each named view (see ``ds4d_ns.camera_layouts`` for the convention)."""


@dataclass
class _RenderOptions:
    load_config: Path
    """config.yml of a trained ds4d run."""
    output_dir: Path = Path("renders")
    """Folder the videos are written to (created if missing). It must be new, empty or hold only ds4d-render
    videos; a rerun replaces its own earlier videos; --force writes beside other files, never over them."""
    resolution: int = 512
    """Width and height of the square videos in pixels."""
    elevation_deg: float = 0.0
    """Camera elevation in degrees."""
    radius: float = camera_layouts.INPUT_RADIUS
    """Camera distance from the object centre."""
    fov_deg: float = camera_layouts.INPUT_FOVY_DEG
    """Field of view in degrees."""
    fps: int = 30
    """Frames per second of the videos."""
    batch_size: int = 8
    """Cameras rendered per call of the model."""
    force: bool = False
    """Write into a folder holding files ds4d-render did not write (they are left alone)."""

    def _check(self) -> None:
        require_at_least("--resolution", self.resolution)
        require_at_least("--batch-size", self.batch_size)
        require_at_least("--fps", self.fps)
        if not 0.0 < self.fov_deg < 180.0:
            raise UserError(f"--fov-deg must lie strictly between 0 and 180, got {self.fov_deg}")
        if not self.radius > 0.0:
            raise UserError(f"--radius must be positive, got {self.radius}")

    def _write(
        self,
        job: str,
        names: List[str],
        poses: Dict[str, List[Tuple[float, float]]],
        playback: Callable[[List[np.ndarray]], List[np.ndarray]] = list,
    ) -> List[Path]:
        """Check the run and the folder, load the model, render each named video (atomically).

        ``playback`` orders the rendered frames into the video (each pose is rendered once)."""
        run = resolve_run(self.load_config)
        check_checkpoint_folder(run.checkpoint_dir)
        settings = {**{k: v for k, v in vars(self).items() if k != "force"}, "load_config": str(self.load_config)}
        settings["output_dir"] = str(self.output_dir)
        output = prepare_output_dir(
            self.output_dir,
            MANIFEST_NAME,
            settings,
            self.force,
            TOOL,
            job=job,
            inputs=(run.config_path, run.checkpoint_dir, run.dataset),
            resumable=False,
        )
        output.check_can_write(names)
        model, _, _ = load_trained_model(run)
        written = []
        with output:  # replaces this job's previous videos here, and only those
            for name in names:
                path = self.output_dir / name
                frames = playback(list(_render(model, self, poses[name], Path(name).stem)))
                write_video_atomic(path, frames, fps=self.fps)
                CONSOLE.log(f"wrote {escape(str(path))}")
                written.append(path)
        return written


@dataclass
class RenderOrbit(_RenderOptions):
    """A 360-degree orbit at one time."""

    time: float = 0.5
    """Time of the clip in [0, 1] at which the object is frozen."""
    num_frames: int = 120
    """Frames of the orbit."""

    def main(self) -> List[Path]:
        self._check()
        require_at_least("--num-frames", self.num_frames)
        if not 0.0 <= self.time <= 1.0:
            raise UserError(f"--time must lie in [0, 1], got {self.time}")
        azimuths = np.linspace(0.0, 360.0, self.num_frames, endpoint=False).tolist()
        name = f"orbit_t{self.time:.3f}.mp4"
        # one job per orbit time: orbits at other times and the named views stay beside it
        return self._write(Path(name).stem, [name], {name: [(az, self.time) for az in azimuths]})


@dataclass
class RenderViews(_RenderOptions):
    """Fixed front, right, back and left cameras over the whole clip."""

    num_times: int = 60
    """Time steps sampled uniformly over [0, 1]."""
    view_names: Tuple[str, ...] = ("front", "right", "back", "left")
    """Which named views to render (front, right, back, left)."""
    fps: int = 12
    """Frames per second: slow enough to follow a short clip (30 time steps play in 2.5 s)."""
    loops: int = 2
    """Times the clip plays in each video, forward then backward (so the loop has no jump); 0 plays it once forward."""

    def main(self) -> List[Path]:
        self._check()
        require_at_least("--num-times", self.num_times)
        if self.loops < 0:
            raise UserError(f"--loops must be 0 (once forward) or more, got {self.loops}")
        unknown = [name for name in self.view_names if name not in NAMED_AZIMUTHS]
        if unknown or not self.view_names:
            raise UserError(f"--view-names: unknown {unknown}; choose from {list(NAMED_AZIMUTHS)}")
        times = np.linspace(0.0, 1.0, self.num_times).tolist()
        poses = {f"{name}.mp4": [(NAMED_AZIMUTHS[name], t) for t in times] for name in dict.fromkeys(self.view_names)}
        return self._write("views", list(poses), poses, lambda frames: ping_pong(frames, self.loops))


def ping_pong(frames: List[np.ndarray], loops: int) -> List[np.ndarray]:
    """``frames`` forward then backward, ``loops`` times (the turning frames once each); 0: forward once."""
    if loops == 0 or len(frames) < 2:
        return list(frames)
    cycle = list(frames) + list(frames[-2:0:-1])
    return cycle * loops + [frames[0]]


@torch.no_grad()
def _render(model, options: _RenderOptions, poses: Sequence[Tuple[float, float]], label: str) -> Iterator[np.ndarray]:
    """Frames of (azimuth, time) poses, rendered in batches."""
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
    command = tyro.cli(Commands)
    with exit_on_user_error(TOOL):
        command.main()


if __name__ == "__main__":
    entrypoint()
