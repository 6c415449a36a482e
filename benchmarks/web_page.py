"""Page weight and playback rate of a ``ds4d-export --web`` page in headless Chromium.

    python benchmarks/web_page.py WEB_FOLDER [--size 640x480] [--seconds 10]
    python benchmarks/web_page.py --synthetic 100000 --frames 30 OUT_FOLDER

The first form measures an exported ``web/`` folder; the second first writes a synthetic clip of that many
Gaussians per frame (SH degree 1, a static body and a turning part, attributes spread like a trained model's)
through the exporter's own page writer, then measures it. Printed as one JSON object: bytes per frame and in
total, the seconds until the page is ready, the rate the page draws at while playing (``drawFps``: WebGL frames
per second, SwiftShader on a machine without a GPU) and how many distinct clip frames it showed per second
against the clip's nominal rate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ds4d_ns.exporting import web
from ds4d_ns.exporting.headless_browser import HeadlessChromium, serve_folder
from ds4d_ns.exporting.splat_frame import SplatFrame


def synthetic_clip(out: Path, num_gaussians: int, num_frames: int, fps: float) -> Path:
    """Write a synthetic clip's page into ``out/web`` (no model needed); returns the ``web`` folder."""
    rng = np.random.default_rng(0)
    body = rng.normal(0.0, [0.15, 0.15, 0.3], (num_gaussians, 3)).astype(np.float32)
    moving = np.arange(num_gaussians) < num_gaussians // 4
    body[moving] = rng.uniform([-0.05, -0.05, 0.3], [0.5, 0.05, 0.4], (int(moving.sum()), 3))
    attributes = dict(
        sh_dc=rng.normal(0.0, 0.6, (num_gaussians, 3)).astype(np.float32),
        sh_rest=rng.normal(0.0, 0.05, (num_gaussians, 3, 3)).astype(np.float32),
        opacity_logits=rng.normal(1.5, 1.5, num_gaussians).astype(np.float32),
        log_scales=rng.normal(-4.5, 0.6, (num_gaussians, 3)).astype(np.float32),
    )
    quats = rng.normal(size=(num_gaussians, 4)).astype(np.float32)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    times = np.linspace(0.0, 1.0, num_frames).tolist()
    bounds = []
    for index, t in enumerate(times):
        angle = 2 * np.pi * t
        turn = np.array([[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]], np.float32)
        means = body.copy()
        means[moving] = (body[moving] - [0, 0, 0.35]) @ turn.T + [0, 0, 0.35]
        frame = SplatFrame(means=means, quats_wxyz=quats, **attributes)
        web.write_web_frame(out, index, num_frames, frame)
        bounds.append(frame.bounds())
    seconds = [t * (num_frames - 1) / fps for t in times]
    page = web.write_web_page(
        out,
        web.require_web_renderer(),
        times=times,
        num_gaussians=[num_gaussians] * num_frames,
        bounds=bounds,
        seconds=seconds,
        fps=fps,
        dataset=None,
        source={"synthetic": num_gaussians},
        generator={"tool": "benchmarks/web_page.py"},
    )
    return page.parent


def measure(folder: Path, width: int, height: int, seconds: float) -> dict:
    manifest = json.loads((folder / web.WEB_MANIFEST_NAME).read_text())
    frame_bytes = [frame["bytes"] for frame in manifest["frames"]]
    total = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    with serve_folder(folder) as base, HeadlessChromium(width, height, timeout_s=600) as browser:
        start = time.monotonic()
        browser.open(f"{base}index.html")
        browser.evaluate("window.ds4d.ready", timeout_s=600)
        ready_s = time.monotonic() - start
        browser.evaluate("window.ds4d.afterFrames(5)", timeout_s=600)  # past the first sorts
        shown = browser.evaluate(
            f"""new Promise((resolve) => {{
                 const start = performance.now(), drawn = window.ds4d.framesDrawn; let changes = 0,
                 last = window.ds4d.frameIndex;
                 const look = () => {{
                   if (window.ds4d.frameIndex !== last) {{ changes += 1; last = window.ds4d.frameIndex; }}
                   const elapsed = (performance.now() - start) / 1000;
                   if (elapsed < {seconds}) requestAnimationFrame(look);
                   else resolve({{ drawFps: (window.ds4d.framesDrawn - drawn) / elapsed,
                                   clipFramesPerSecond: changes / elapsed }});
                 }};
                 look(); }})""",
            timeout_s=seconds + 120,
        )
        errors = list(browser.errors)
    return {
        "frames": len(frame_bytes),
        "gaussians_per_frame": manifest["frames"][0]["num_gaussians"],
        "bytes_per_frame_mean": float(np.mean(frame_bytes)),
        "bytes_per_gaussian": float(np.sum(frame_bytes) / sum(f["num_gaussians"] for f in manifest["frames"])),
        "frames_total_bytes": int(np.sum(frame_bytes)),
        "page_total_bytes": int(total),
        "viewport": f"{width}x{height}",
        "ready_s": round(ready_s, 2),
        "clip_fps": manifest["fps"],
        **{key: round(value, 2) for key, value in shown.items()},
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a web/ folder, or with --synthetic the folder to write into")
    parser.add_argument("--synthetic", type=int, help="write a synthetic clip of this many Gaussians per frame first")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument("--size", default="640x480", help="viewport, WIDTHxHEIGHT")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to watch it play")
    args = parser.parse_args()
    folder = args.folder
    if args.synthetic:
        folder = synthetic_clip(args.folder, args.synthetic, args.frames, args.fps)
    width, height = (int(v) for v in args.size.split("x"))
    print(json.dumps(measure(folder, width, height, args.seconds), indent=1))


if __name__ == "__main__":
    main()
