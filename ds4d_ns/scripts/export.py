"""``ds4d-export``: one Gaussian-splat PLY per time step.

``ns-export gaussian-splat`` writes the canonical Gaussians and ignores time. This command
deforms them to each time step and writes the layout that standard splat viewers read (the
3D Gaussian Splatting PLY: position, zero normals, ``f_dc_*``, ``f_rest_*`` channel-major,
logit opacity, log scales, unit quaternions wxyz), one file per step, plus a ``times.json``
mapping files to times. Files are written atomically, so a viewer never sees half a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import track

from ds4d_ns.data.dataset_format import write_json_atomic
from ds4d_ns.io.atomic import atomic_output
from ds4d_ns.scripts.loading import load_trained_pipeline


def gaussian_ply_fields(model, time: float) -> Dict[str, np.ndarray]:
    """The splat PLY's vertex properties of ``model`` deformed to ``time``, in file order."""
    geometry = model.gaussians_at(time)
    num = geometry.means.shape[0]
    fields: Dict[str, np.ndarray] = {}
    means = geometry.means.detach().cpu().numpy()
    for axis, name in enumerate("xyz"):
        fields[name] = means[:, axis]
    for name in ("nx", "ny", "nz"):
        fields[name] = np.zeros(num, dtype=np.float32)
    shs_0 = model.shs_0.detach().cpu().numpy().reshape(num, -1)
    for i in range(shs_0.shape[1]):
        fields[f"f_dc_{i}"] = shs_0[:, i]
    # [N, K, 3] -> [N, 3, K] flattened: all red coefficients, then green, then blue
    shs_rest = model.shs_rest.detach().transpose(1, 2).reshape(num, -1).cpu().numpy()
    for i in range(shs_rest.shape[1]):
        fields[f"f_rest_{i}"] = shs_rest[:, i]
    fields["opacity"] = model.opacities.detach().cpu().numpy().reshape(num)
    scales = geometry.scales.detach().cpu().numpy()
    for i in range(3):
        fields[f"scale_{i}"] = scales[:, i]
    quats = torch.nn.functional.normalize(geometry.quats.detach(), dim=-1).cpu().numpy()
    for i in range(4):
        fields[f"rot_{i}"] = quats[:, i]
    finite = np.all(np.stack([np.isfinite(v) for v in fields.values()]), axis=0)
    return {name: values[finite].astype(np.float32) for name, values in fields.items()}


def write_gaussian_ply_atomic(path: Path, fields: Dict[str, np.ndarray]) -> None:
    """Binary little-endian PLY with one float property per entry of ``fields``."""
    from plyfile import PlyData, PlyElement

    vertices = np.empty(len(next(iter(fields.values()))), dtype=[(name, "f4") for name in fields])
    for name, values in fields.items():
        vertices[name] = values
    with atomic_output(path) as tmp:
        PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(tmp)


@dataclass
class ExportGaussianSequence:
    """Export a trained ds4d run as one Gaussian-splat PLY per time step."""

    load_config: Path
    """config.yml of a trained ds4d run."""
    output_dir: Path
    """Folder to write ``frame_XXXX.ply`` and ``times.json`` into (created if missing)."""
    num_times: Optional[int] = None
    """Time steps sampled uniformly over [0, 1]; None exports one per training frame."""

    def main(self) -> List[Path]:
        pipeline, step = load_trained_pipeline(self.load_config)
        model = pipeline.model
        num_times = self.num_times or int(pipeline.datamanager.train_dataparser_outputs.metadata.get("num_frames", 30))
        if num_times < 1:
            raise ValueError(f"--num-times must be at least 1, got {num_times}")
        times = np.linspace(0.0, 1.0, num_times).tolist() if num_times > 1 else [0.5]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        written = []
        with torch.no_grad():
            for index, time in track(list(enumerate(times)), description="exporting Gaussians"):
                path = self.output_dir / f"frame_{index:04d}.ply"
                write_gaussian_ply_atomic(path, gaussian_ply_fields(model, time))
                written.append(path)
        write_json_atomic(
            self.output_dir / "times.json",
            {
                "source_config": str(self.load_config),
                "checkpoint_step": step,
                "frames": [{"file_path": p.name, "time": t} for p, t in zip(written, times)],
            },
        )
        CONSOLE.log(f"wrote {len(written)} Gaussian PLY files to {self.output_dir}")
        return written


def entrypoint() -> None:
    """Console entry point of ``ds4d-export``."""
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(ExportGaussianSequence).main()


if __name__ == "__main__":
    entrypoint()
