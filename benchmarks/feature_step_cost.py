"""Benchmark: the cost of frame features + TSSF per training step, in isolation.

Whole training steps vary by about 20 % from run to run (Python and launch overhead, host speed),
more than the feature path costs. This times only what the features add, at a fixed Gaussian
count: the deformation of N canonical Gaussians (HexPlane + MLP, forward and backward) without
features, and with projection, sampling and fusion (front / mean / GA / DA) of 30 frames x 7 views
of 32-channel 32 x 32 maps. The maps are random (cost does not depend on their values). Median of
``--repeats`` after warm-up, synchronised. Runs on CUDA when present (the numbers that matter),
else on the CPU with a small N as a smoke test::

    python benchmarks/feature_step_cost.py --gaussians 50000 --output results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    import torch

    from ds4d_ns import camera_layouts
    from ds4d_ns.fields.deformation import DeformationField
    from ds4d_ns.fields.tssf import FramePointFeatures
    from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    frames, channels, map_side, size = 30, 32, 32, 256  # map_side: feature-map rows and columns
    layout = [camera_layouts.input_view(), *camera_layouts.zero123pp_v12_views()]
    viewmats = opengl_c2w_to_opencv_viewmat(torch.stack([camera_layouts.orbit_c2w(v) for v in layout]).float())
    intrinsics = []
    for view in layout:
        focal = camera_layouts.focal_from_fov(view.fov_deg, size)
        intrinsics.append(torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]]))
    viewmats = viewmats[None].repeat(frames, 1, 1, 1)
    intrinsics = torch.stack(intrinsics)[None].repeat(frames, 1, 1, 1)
    maps = torch.randn(frames, len(layout), channels, map_side, map_side).half()
    times = torch.linspace(0, 1, frames)
    aabb = torch.tensor([[-0.6] * 3, [0.6] * 3])
    means = (0.4 * torch.randn(args.gaussians, 3)).to(device).requires_grad_(True)
    quats = torch.nn.functional.normalize(torch.randn(args.gaussians, 4), dim=-1).to(device).requires_grad_(True)
    scales = torch.full((args.gaussians, 3), -4.0, device=device, requires_grad=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def median_ms(step) -> float:
        for _ in range(5):
            step()
        sync()
        samples = []
        for index in range(args.repeats):
            begin = time.perf_counter()
            step(index)
            sync()
            samples.append(1000 * (time.perf_counter() - begin))
        return round(statistics.median(samples), 3)

    results = {}
    plain = DeformationField(aabb, time_resolution=15).to(device)

    def base_step(index: int = 0) -> None:
        out = plain(means, quats, scales, (index % 97) / 96)
        (out.means.sum() + out.scales.sum() + out.quats.sum()).backward()

    results["deformation_only"] = median_ms(base_step)
    for fusion in ("front", "mean", "ga", "da"):
        field = DeformationField(aabb, time_resolution=15, extra_feature_dim=channels).to(device)
        tssf = FramePointFeatures(
            maps, maps[:, :, 0].float().abs(), times, viewmats, intrinsics, size, size, fusion, channels
        ).to(device)

        def feature_step(index: int = 0, field=field, tssf=tssf) -> None:
            time_value = (index % 97) / 96
            features = tssf(means, time_value).features
            out = field(means, quats, scales, time_value, features)
            (out.means.sum() + out.scales.sum() + out.quats.sum()).backward()

        results[f"features_{fusion}"] = median_ms(feature_step)
    base = results["deformation_only"]
    added = {key: round(value - base, 3) for key, value in results.items() if key != "deformation_only"}
    record = {
        "benchmark": "feature_step_cost",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "gaussians": args.gaussians,
        "median_ms_forward_backward": results,
        "added_ms_by_features": added,
        "note": "compare added_ms with a measured median training step of the same device (RESULTS.md)",
    }
    print(json.dumps(record, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
