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
are printed by it; this script measures the files it wrote). After ``--mesh-texture``, ``--textured``
also scores the glb as a viewer shows it: each frame's vertices (base + that frame's morph target), UVs
interpolated perspective-correctly and the embedded texture sampled there, against the Gaussian render.
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


class _TexturedGlb:
    """The textured ``animated.glb`` as a viewer draws it: base positions plus one morph target per frame,
    triangles, UVs and the texture image."""

    def __init__(self, path: Path) -> None:
        import io

        import pygltflib
        from PIL import Image

        gltf = pygltflib.GLTF2().load(str(path))
        self._gltf, self._data = gltf, gltf.binary_blob()
        primitive = gltf.meshes[0].primitives[0]
        if primitive.attributes.TEXCOORD_0 is None:
            sys.exit(f"{path} has no texture: export it with --mesh-texture, or leave out --textured")
        self.base = self._accessor(primitive.attributes.POSITION)
        self.faces = self._accessor(primitive.indices).reshape(-1, 3).astype(np.int64)
        self.uvs = self._accessor(primitive.attributes.TEXCOORD_0)
        self.targets = [target["POSITION"] for target in primitive.targets]
        texture = gltf.textures[gltf.materials[0].pbrMetallicRoughness.baseColorTexture.index]
        view = gltf.bufferViews[gltf.images[texture.source].bufferView]
        png = self._data[view.byteOffset : view.byteOffset + view.byteLength]
        self.image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255.0

    def _accessor(self, index: int) -> np.ndarray:
        accessor = self._gltf.accessors[index]
        view = self._gltf.bufferViews[accessor.bufferView]
        dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}[accessor.componentType]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[accessor.type]
        start = view.byteOffset + (accessor.byteOffset or 0)
        return np.frombuffer(self._data, dtype, accessor.count * width, start).reshape(accessor.count, width)

    def frame(self, index: int) -> np.ndarray:
        """Vertex positions at frame ``index`` (the animation turns on that frame's target alone)."""
        return self.base + self._accessor(self.targets[index])


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


def _textured_scores(glb: _TexturedGlb, frame: int, viewmat, K, render) -> dict:
    """Silhouette IoU and PSNR (whole image over white, and where both cover) of the textured glb at
    ``frame`` against the Gaussian render."""
    from ds4d_ns.evaluation.mesh_fidelity import psnr, rasterize_mesh, silhouette_iou
    from ds4d_ns.exporting.mesh_texture import sample_texture

    device = viewmat.device
    height, width = render["rgb"].shape[:2]
    uv3 = np.c_[glb.uvs, np.zeros_like(glb.uvs[:, :1])].astype(np.float32)  # UVs interpolated as a colour is
    drawn = rasterize_mesh(
        torch.from_numpy(np.ascontiguousarray(glb.frame(frame))).to(device),
        torch.from_numpy(glb.faces).to(device),
        viewmat,
        K.to(device),
        width,
        height,
        torch.from_numpy(uv3).to(device),
    )
    mask = drawn["mask"]
    image = torch.ones(height, width, 3, device=device)
    sampled = sample_texture(glb.image, drawn["rgb"][mask].cpu().numpy()[:, :2]).astype(np.float32)
    image[mask] = torch.from_numpy(sampled).to(device)
    alpha = render["accumulation"][..., 0]
    return {
        "textured_silhouette_iou": silhouette_iou(mask, alpha),
        "textured_psnr": psnr(image, render["rgb"]),
        "textured_psnr_inside": psnr(image, render["rgb"], mask & (alpha > 0.5)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-config", type=Path, required=True)
    parser.add_argument("--export-dir", type=Path, required=True, help="the folder ds4d-export --mesh wrote")
    parser.add_argument("--output", type=Path, required=True, help="JSON record to write")
    parser.add_argument("--textured", action="store_true", help="also score the textured glb (--mesh-texture)")
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
    textured = _TexturedGlb(args.export_dir / "mesh" / "animated.glb") if args.textured else None
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
                extra = {} if textured is None else _textured_scores(textured, index, viewmat, Ks[0], render)
                rows.append(
                    {
                        **extra,
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
        **(
            {}
            if textured is None
            else {
                "textured_psnr": summary("textured_psnr"),
                "textured_psnr_inside": summary("textured_psnr_inside"),
                "textured_silhouette_iou": summary("textured_silhouette_iou"),
                "texture_size": list(textured.image.shape[:2]),
                "glb_vertices": int(textured.base.shape[0]),
            }
        ),
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
