"""How faithful ``ds4d-export --mesh`` is to the Gaussians of a trained run: silhouette, colour, motion.

Given a run's config.yml and the folder ``ds4d-export --mesh`` wrote, reports per frame and per
camera (the dataset's eval cameras, its input cameras where it has none) the silhouette IoU of the
mesh against the Gaussian render's alpha > 0.5 and the PSNR of the vertex-coloured mesh against the
Gaussian render (both over white; also over the pixels both cover), and per frame the mean distance
from the vertices to the nearest deformed Gaussian centre of opacity > 0.5 over the Gaussians'
bounding-box diagonal. Writes a JSON record with the device, date and command.

    python benchmarks/mesh_export.py --load-config outputs/.../config.yml --export-dir splats \\
        --output benchmarks/results/mesh_export_windmill.json

Run ``ds4d-export --load-config ... --output-dir splats --mesh`` first (the timings of that command
are printed by it; this script measures the files it wrote).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData


def _frame(path: Path):
    ply = PlyData.read(str(path))
    vertex = ply["vertex"].data
    xyz = np.stack([vertex[a] for a in "xyz"], axis=-1).astype(np.float32)
    rgb = np.stack([vertex[c] for c in ("red", "green", "blue")], axis=-1).astype(np.float32) / 255.0
    faces = np.stack(ply["face"].data["vertex_indices"]).astype(np.int64)
    return xyz, faces, rgb


def _camera_entries(run, role: str):
    """The dataset's views of ``role`` at its first frame (poses do not change over the clip)."""
    from ds4d_ns.data.dataset_format import TRANSFORMS_NAME

    frames = json.loads((run.dataset / TRANSFORMS_NAME).read_text())["frames"]
    first = min(int(f["frame_index"]) for f in frames)
    return [f for f in frames if f.get("role", "input") == role and int(f["frame_index"]) == first]


def _camera(entry: dict, time: float):
    """One nerfstudio camera of a transforms.json entry, at ``time``."""
    from nerfstudio.cameras.cameras import Cameras, CameraType

    def value(key):
        return torch.tensor([[float(entry[key])]])

    return Cameras(
        camera_to_worlds=torch.tensor(entry["transform_matrix"], dtype=torch.float32)[None, :3, :4],
        fx=value("fl_x"),
        fy=value("fl_y"),
        cx=value("cx"),
        cy=value("cy"),
        width=value("w").long(),
        height=value("h").long(),
        camera_type=CameraType.PERSPECTIVE,
        times=torch.tensor([[float(time)]]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-config", type=Path, required=True)
    parser.add_argument("--export-dir", type=Path, required=True, help="the folder ds4d-export --mesh wrote")
    parser.add_argument("--output", type=Path, required=True, help="JSON record to write")
    args = parser.parse_args()

    from ds4d_ns.evaluation.mesh_fidelity import motion_distance, psnr, rasterize_mesh, silhouette_iou
    from ds4d_ns.rendering.camera_matrices import intrinsics_and_size, opengl_c2w_to_opencv_viewmat
    from ds4d_ns.scripts.loading import load_trained_model, resolve_run

    run = resolve_run(args.load_config)
    if run.dataset is None:
        sys.exit(f"the run's dataset {run.dataset_given} is not found: its cameras are needed")
    model, step, _ = load_trained_model(run)
    manifest = json.loads((args.export_dir / "mesh" / "manifest.json").read_text())
    role = "eval"
    cameras = _camera_entries(run, "eval")
    if not cameras:
        role, cameras = "input", _camera_entries(run, "input")
    device = model.device
    white = torch.ones(3, device=device)
    opaque = torch.sigmoid(model.opacities.view(-1)) > 0.5
    rows = []
    started = time.time()
    with torch.no_grad():
        for index, entry in enumerate(manifest["frames"]):
            vertices, faces, rgb = _frame(args.export_dir / "mesh" / entry["file_path"])
            centres = model.gaussians_at(entry["time"]).means[opaque].cpu().numpy()
            # no opaque Gaussian (an untrained run): no motion figure
            motion = motion_distance(vertices, centres)[1] if len(centres) else float("nan")
            verts_t, faces_t, rgb_t = (torch.from_numpy(a).to(device) for a in (vertices, faces, rgb))
            for view in range(len(cameras)):
                camera = _camera(cameras[view], entry["time"])
                render = model.get_outputs_for_camera(camera)
                viewmat = opengl_c2w_to_opencv_viewmat(camera.camera_to_worlds.to(device))[0]
                Ks, width, height = intrinsics_and_size(camera)
                drawn = rasterize_mesh(verts_t, faces_t, viewmat, Ks[0].to(device), width, height, rgb_t)
                alpha = render["accumulation"][..., 0]
                mesh_image = torch.where(drawn["mask"][..., None], drawn["rgb"], white)
                rows.append(
                    {
                        "frame": index,
                        "time": entry["time"],
                        "camera": view,
                        "silhouette_iou": silhouette_iou(drawn["mask"], alpha),
                        "psnr": psnr(mesh_image, render["rgb"]),
                        "psnr_inside": psnr(mesh_image, render["rgb"], drawn["mask"] & (alpha > 0.5)),
                        "motion_distance_rel": motion,
                    }
                )
            print(
                f"frame {index}: IoU {np.mean([r['silhouette_iou'] for r in rows if r['frame'] == index]):.3f}, "
                f"motion {motion:.4f}",
                flush=True,
            )

    def summary(key):
        values = np.array([r[key] for r in rows], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return None
        return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}

    middle = len(manifest["frames"]) // 2
    motion_by_frame = {r["frame"]: r["motion_distance_rel"] for r in rows}
    record = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "config": str(args.load_config),
        "checkpoint_step": step,
        "cameras": f"{len(cameras)} {role} cameras",
        "mesh": {k: manifest[k] for k in ("num_vertices", "num_faces", "num_frames")}
        | {"settings": manifest["settings"]},
        "silhouette_iou": summary("silhouette_iou"),
        "psnr": summary("psnr"),
        "psnr_inside": summary("psnr_inside"),
        "motion_distance_rel": summary("motion_distance_rel"),
        "motion_distance_rel_middle_and_ends": {
            "first": motion_by_frame[0],
            "middle": motion_by_frame[middle],
            "last": motion_by_frame[len(manifest["frames"]) - 1],
        },
        "seconds": time.time() - started,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
