"""``ds4d-export``: one Gaussian-splat PLY per time step.

``ns-export gaussian-splat`` writes the canonical Gaussians and ignores time. This command
deforms them to each time step and writes the layout that standard splat viewers read (the
3D Gaussian Splatting PLY: position, zero normals, ``f_dc_*``, ``f_rest_*`` channel-major,
logit opacity, log scales, unit quaternions wxyz), one file per step, plus a ``times.json``
mapping files to times. Files are written atomically, so a viewer never sees half a frame. It
needs only the run's checkpoint (the dataset is read, when found, for its frame count). A rerun
replaces its previous export whole; it never writes over or deletes a file it did not write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.progress import track

from ds4d_ns.data.dataset_format import TRANSFORMS_NAME
from ds4d_ns.errors import UserError, exit_on_user_error
from ds4d_ns.io.atomic import atomic_output
from ds4d_ns.io.checkpoints import CheckpointError, check_checkpoint_folder, checkpoint_files, load_checkpoint_file
from ds4d_ns.io.output_folder import prepare_output_dir
from ds4d_ns.io.writers import write_json_atomic
from ds4d_ns.scripts.loading import RunFolder, load_trained_model, require_at_least, resolve_run

TOOL = "ds4d-export"
MANIFEST_NAME = "ds4d_export.json"
"""Lists the files this command wrote in its output folder (see ``ds4d_ns.io.output_folder``)."""
TIMES_NAME = "times.json"


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
    """Folder to write ``frame_XXXX.ply`` and ``times.json`` into (created if missing). It must be new, empty
    or an earlier export (whose files are replaced whole); --force writes beside other files, never over them."""
    num_times: Optional[int] = None
    """Time steps sampled uniformly over [0, 1] (at least 1); None exports one per training frame."""
    force: bool = False
    """Write into a folder holding files ds4d-export did not write (they are left alone)."""

    def main(self) -> List[Path]:
        # every check before the model is loaded: flags, config, checkpoint, output folder
        require_at_least("--num-times", self.num_times)
        run = resolve_run(self.load_config)
        check_checkpoint_folder(run.checkpoint_dir)
        settings = {"load_config": str(self.load_config), "num_times": self.num_times}
        output = prepare_output_dir(
            self.output_dir,
            MANIFEST_NAME,
            settings,
            self.force,
            TOOL,
            job="splats",
            inputs=(run.config_path, run.checkpoint_dir, run.dataset),
            resumable=False,
        )
        num_times = self.num_times or _training_frame_count(run)
        names = [f"frame_{index:04d}.ply" for index in range(num_times)] + [TIMES_NAME]
        output.check_can_write(names)
        model, step, _ = load_trained_model(run)
        times = np.linspace(0.0, 1.0, num_times).tolist() if num_times > 1 else [0.5]
        written = []
        with output, torch.no_grad():  # replaces this command's previous files here, and only those
            for name, time in track(list(zip(names, times)), description="exporting Gaussians"):
                path = self.output_dir / name
                write_gaussian_ply_atomic(path, gaussian_ply_fields(model, time))
                written.append(path)
            write_json_atomic(
                self.output_dir / TIMES_NAME,
                {
                    "source_config": str(self.load_config),
                    "checkpoint_step": step,
                    "frames": [{"file_path": p.name, "time": t} for p, t in zip(written, times)],
                },
            )
        CONSOLE.log(f"wrote {len(written)} Gaussian PLY files to {escape(str(self.output_dir))}")
        return written


def _training_frame_count(run: RunFolder) -> int:
    """Frames of the run's clip: from the dataset's transforms.json, else from the checkpoint's feature maps."""
    if run.dataset is not None:
        try:
            frames = json.loads((run.dataset / TRANSFORMS_NAME).read_text())["frames"]
            return len({int(frame["frame_index"]) for frame in frames})
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            pass  # the dataparser's checks are not repeated here: fall back to the checkpoint
    for _, path in reversed(checkpoint_files(run.checkpoint_dir)):
        try:
            maps = load_checkpoint_file(path)["pipeline"].get("_model.frame_point_features.maps")
        except CheckpointError:
            continue
        if maps is not None:
            return int(maps.shape[0])
        break
    raise UserError(
        f"{run.config_path}: the number of training frames is unknown (the dataset {run.dataset_given} is not "
        "found and this model has no frame features): pass --num-times"
    )


def entrypoint() -> None:
    """Console entry point of ``ds4d-export``."""
    tyro.extras.set_accent_color("bright_yellow")
    config = tyro.cli(ExportGaussianSequence)
    with exit_on_user_error(TOOL):
        config.main()


if __name__ == "__main__":
    entrypoint()
