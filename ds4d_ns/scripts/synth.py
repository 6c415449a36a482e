"""``ds4d-synth``: write the embedded procedural sample dataset.

Example::

    ds4d-synth data/windmill --scene windmill --frames 30 --resolution 256 --seed 0
    ds4d-synth data/waving-noisy --scene waving --pseudo-noise 1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from ds4d_ns.errors import UserError, exit_on_user_error
from ds4d_ns.synth.generate import generate_dataset
from ds4d_ns.synth.scenes import DEFAULT_SCENE, SCENES


@dataclass
class SynthConfig:
    """Render a procedural animated object (SDF sphere tracing) into a ds4d dataset folder."""

    output: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="OUT")]]
    """Dataset folder to write; must be empty, new, or an earlier run with the same settings (resumed)."""
    scene: str = DEFAULT_SCENE
    """Scene name: windmill (rotor turning in front of a tower) or waving (arm waving, tail wagging)."""
    frames: int = 30
    """Number of video frames; frame i has time i / (frames - 1)."""
    resolution: int = 256
    """Width and height of every (square) image in pixels."""
    seed: int = 0
    """Seed of the pseudo-view degradation and the point cloud sampling (non-negative)."""
    pseudo_noise: float = 0.0
    """Degradation of the pseudo views only: 0 = clean; 1 = about 1.5 px blur, 12% colour cast, 1 px jitter."""
    num_points: int = 5000
    """Number of points in init.ply, sampled on the middle frame's surface."""
    point_noise: float = 0.01
    """Standard deviation of the Gaussian noise added to init.ply positions, in scene units."""
    steps: int = 80
    """Sphere-tracing steps per ray."""
    force: bool = False
    """Write into a folder holding other files (left alone) or an earlier run of other settings (replaced)."""


def validate(config: SynthConfig) -> None:
    """Check every argument before any work.

    Raises:
        UserError: one message naming the flag (or OUT), the value given and what is accepted.
    """
    if config.scene not in SCENES:
        raise UserError(f"--scene {config.scene!r}: unknown scene; choose one of {sorted(SCENES)}")
    minimums = {"frames": 1, "resolution": 8, "num_points": 4, "steps": 1, "seed": 0}
    for name, minimum in minimums.items():
        value = getattr(config, name)
        if value < minimum:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be at least {minimum}, got {value}")
    for name in ("pseudo_noise", "point_noise"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0.0):
            raise UserError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    output = Path(config.output)
    if output.exists() and not output.is_dir():
        raise UserError(f"OUT {output} is a file; give a folder (new, empty, or an earlier ds4d-synth run)")
    for parent in output.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"OUT {output} cannot be made: {parent} is a file; give a path under a folder")


def main(config: SynthConfig) -> Path:
    """Generate the dataset described by ``config``; returns the path of its transforms.json.

    Raises:
        UserError: an argument ds4d-synth cannot use (see :func:`validate`), before any work.
    """
    validate(config)
    return generate_dataset(
        config.output,
        scene=config.scene,
        frames=config.frames,
        resolution=config.resolution,
        seed=config.seed,
        pseudo_noise=config.pseudo_noise,
        num_points=config.num_points,
        point_noise=config.point_noise,
        steps=config.steps,
        force=config.force,
    )


def entrypoint() -> None:
    """Console-script entry point: user errors end with one line and exit status 2."""
    config = tyro.cli(SynthConfig)
    with exit_on_user_error("ds4d-synth"):
        main(config)


if __name__ == "__main__":
    entrypoint()
