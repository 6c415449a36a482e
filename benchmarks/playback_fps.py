"""Benchmark: playback render FPS against the number of Gaussians, with and without the playback cache.

Issue 12 asks for >= 300 FPS at 800 x 800 with 100k Gaussians, and FPS against the Gaussian count
(10k-300k). A ds4d model (``ds4d-base`` sizes: HexPlane 64 x (1, 2) x 32 channels, MLP width 64,
30 frames) is built with N random canonical Gaussians and a random deformation field (time does
not depend on the weights; the zero-initialised heads are randomised so the motion is real). One
camera at ``--resolution`` renders a sweep of times through ``get_outputs_for_camera`` (the
viewer's and ``ns-render``'s path): every frame time and every midpoint between two frames, as a
Time slider played at twice the frame rate would. Rows:

* ``off``: the deformation runs at every render (``--pipeline.model.playback-cache off``);
* ``frames``: after one pass that fills the cache (``fill_ms``, reported), renders only blend and
  rasterise (the default, ``frames``).

Run on a GPU machine::

    python benchmarks/playback_fps.py --output playback_fps.json

``--device cpu --smoke`` runs a tiny sweep (small counts, 64 px) to check the script works.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Dict, List

NUM_FRAMES = 30


def _build_model(num_gaussians: int, device: str):
    import torch
    from nerfstudio.data.scene_box import SceneBox

    from ds4d_ns.ds4d_model import Ds4dModelConfig

    torch.manual_seed(0)
    config = Ds4dModelConfig(num_random=num_gaussians, random_init_radius=0.5)
    model = config.setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])),
        num_train_data=1,
        metadata={"num_frames": NUM_FRAMES},
    )
    with torch.no_grad():
        for parameter in model.deformation.hexplane.parameters():  # the planes multiply: keep them near 1
            parameter.uniform_(0.9, 1.1)
        for name, parameter in model.deformation.named_parameters():
            if not name.startswith("hexplane."):
                parameter.normal_(0.0, 0.05)
    return model.to(device).eval()


def _camera(resolution: int, time_value: float, device: str):
    import torch
    from nerfstudio.cameras.cameras import Cameras

    c2w = torch.eye(4)[:3][None].clone()
    c2w[0, 2, 3] = 2.0  # OpenGL camera on +z looking at the origin
    focal = 1.2 * resolution
    return Cameras(
        camera_to_worlds=c2w,
        fx=focal,
        fy=focal,
        cx=resolution / 2,
        cy=resolution / 2,
        width=resolution,
        height=resolution,
        times=torch.tensor([[time_value]]),
    ).to(device)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _sweep_ms(model, cameras, device: str) -> List[float]:
    """Milliseconds of each render of the sweep."""
    times = []
    for camera in cameras:
        _sync(device)
        begin = time.perf_counter()
        model.get_outputs_for_camera(camera)
        _sync(device)
        times.append(1000 * (time.perf_counter() - begin))
    return times


def measure(num_gaussians: int, resolution: int, repeats: int, device: str) -> Dict[str, float]:
    """FPS of the time sweep without the cache and with the frame cache (filled), for one Gaussian count."""
    from ds4d_ns.data.dataset_format import frame_time

    model = _build_model(num_gaussians, device)
    frames = [frame_time(i, NUM_FRAMES) for i in range(NUM_FRAMES)]
    sweep = sorted(frames + [0.5 * (a + b) for a, b in zip(frames, frames[1:])])
    cameras = [_camera(resolution, t, device) for t in sweep]
    row: Dict[str, float] = {"gaussians": num_gaussians, "resolution": resolution, "renders_per_sweep": len(sweep)}

    model.config.playback_cache = "off"
    _sweep_ms(model, cameras[:3], device)  # warm-up (kernels, allocator)
    off = [ms for _ in range(repeats) for ms in _sweep_ms(model, cameras, device)]

    model.config.playback_cache = "frames"
    model._playback.clear()
    fill = sum(_sweep_ms(model, cameras, device))  # first pass deforms each frame time once
    cached = [ms for _ in range(repeats) for ms in _sweep_ms(model, cameras, device)]

    for name, values in (("off", off), ("frames", cached)):
        median = statistics.median(values)
        row[f"{name}_ms"] = round(median, 3)
        row[f"{name}_fps"] = round(1000.0 / median, 1)
    row["fill_ms"] = round(fill, 1)
    row["speedup"] = round(row["off_ms"] / row["frames_ms"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (gsplat) or cpu (pure-torch rasteriser)")
    parser.add_argument("--resolution", type=int, default=800)
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 30_000, 100_000, 200_000, 300_000])
    parser.add_argument("--repeats", type=int, default=5, help="sweeps timed per row (59 renders each)")
    parser.add_argument("--smoke", action="store_true", help="tiny counts at 64 px, one sweep: checks the script")
    parser.add_argument("--output", type=Path, default=None, help="JSON record of the rows")
    args = parser.parse_args()
    if args.smoke:
        args.counts, args.resolution, args.repeats = [500, 2000], 64, 1

    import torch
    from nerfstudio.utils.rich_utils import CONSOLE

    rows = []
    for count in args.counts:
        row = measure(count, args.resolution, args.repeats, args.device)
        rows.append(row)
        CONSOLE.print(
            f"{count:>7} Gaussians @ {args.resolution}px: off {row['off_ms']:8.2f} ms ({row['off_fps']:7.1f} FPS)  "
            f"frames {row['frames_ms']:8.2f} ms ({row['frames_fps']:7.1f} FPS)  x{row['speedup']}  "
            f"fill {row['fill_ms']:.0f} ms"
        )
    record = {
        "benchmark": "playback_fps",
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
        "torch": torch.__version__,
        "smoke": args.smoke,
        "rows": rows,
    }
    if args.output is not None:
        args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
