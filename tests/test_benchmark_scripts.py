"""The GPU benchmark scripts, run end to end on the CPU at toy sizes.

Device time is scarce and a GPU machine starts bare: a script that breaks on its first GPU run (a flag
renamed, a path guessed wrong, a record field missing) costs a whole call. These tests run each script as
the GPU call would, shrunk by its own knobs (``SMOKE=1`` for ``step_speed_gpu.sh``; ``FRAMES``, ``SIZE``,
``METHOD``, ``PROCESS_ARGS``, ``TRAIN_ARGS`` for ``end_to_end_gpu.sh``), and check that every record the
call must bring back is written, from the run it describes. They time nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _script_env(tmp_path: Path, **extra: str) -> dict:
    """The environment of a GPU call: the project's interpreter and console scripts first on PATH."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _run(script: str, out: Path, env: dict, timeout: int) -> str:
    result = subprocess.run(
        ["bash", f"benchmarks/{script}", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed
    assert "Traceback" not in printed and "failed" not in printed, printed
    return printed


def test_step_speed_script_writes_every_record(tmp_path: Path):
    """``SMOKE=1 bash benchmarks/step_speed_gpu.sh``: the graph tests, the mesh export of one scene with its
    evaluation and fidelity record, then each timed recipe and profile, each with the settings its tag names."""
    out = tmp_path / "out"
    env = _script_env(tmp_path, SMOKE="1", SCENES="windmill", WORK=str(tmp_path / "work"))
    printed = _run("step_speed_gpu.sh", out, env, timeout=900)
    assert printed.rstrip().splitlines()[-1].startswith("done")

    mesh = json.loads((out / "mesh-windmill.json").read_text())
    assert mesh["mesh"]["num_faces"] > 0 and 0.0 <= mesh["silhouette_iou"]["mean"] <= 1.0
    recipe = json.loads((out / "recipe-windmill.json").read_text())
    assert mesh["config"] == recipe["run_config"]  # the mesh measured is the run trained
    evaluation = json.loads((out / "eval-windmill" / "metrics.json").read_text())
    assert evaluation["load_config"] == recipe["run_config"]

    expected = {  # tag: (method, CUDA graphs on)
        "windmill": ("ds4d-base", True),
        "base-eager": ("ds4d-base", False),
        "base-graphs2": ("ds4d-base", True),
        "ds4d-graphs": ("ds4d", True),
        "ds4d-eager": ("ds4d", False),
    }
    for tag, (method, graphs) in expected.items():
        record = json.loads((out / f"recipe-{tag}.json").read_text())
        assert (record["method"], record["cuda_graphs"]) == (method, graphs), tag
        assert record["eval"]["psnr"] > 0 and record["median_dynamic_step_ms"] > 0, tag
    for tag in ("base-graphs", "base-eager"):
        profile = json.loads((out / f"profile-{tag}.json").read_text())
        assert profile, tag
    operations = json.loads((out / "operations-base.json").read_text())
    assert operations["method"] == "ds4d-base" and operations["graphed_per_step"] > 0
    assert "pytest -m gpu (graph tests)" in printed


def test_end_to_end_script_times_each_command(tmp_path: Path, tiny_zero123plus: Path):
    """``bash benchmarks/end_to_end_gpu.sh`` with a tiny clip, a tiny Zero123++ and the CPU configuration:
    the three commands run in order on each other's outputs and the record splits the time between them."""
    out = tmp_path / "out"
    env = _script_env(
        tmp_path,
        WORK=str(tmp_path / "work"),
        FRAMES="4",
        SIZE="64",
        METHOD="ds4d-base-cpu",
        PROCESS_ARGS=f"--model-id {tiny_zero123plus} --weights pretrained --num-inference-steps 2 --tile-size 16 "
        "--resolution 32 --num-points 300 --hull-resolution 24 --device cpu",
        TRAIN_ARGS="--max-num-iterations 40 --pipeline.model.static-stage-steps 30",  # opaque enough to mesh
    )
    _run("end_to_end_gpu.sh", out, env, timeout=600)
    record = json.loads((out / "end-to-end.json").read_text())
    assert set(record["seconds"]) == {"process", "train", "export"} and record["method"] == "ds4d-base-cpu"
    assert record["total_minutes"] == pytest.approx(sum(record["seconds"].values()) / 60, abs=0.01)
    exported = tmp_path / "work" / "export"
    assert (exported / "mesh" / "animated.glb").is_file() and (exported / "web" / "index.html").is_file()


def test_step_operations_attributes_every_operation_of_a_step(tmp_path: Path):
    """``benchmarks/step_operations.py`` (a CPU measurement): forward operations by the part that dispatches them,
    backward ones by the part whose autograd node runs them (private torch APIs: this notices when they change)."""
    out = tmp_path / "ops.json"
    command = [
        sys.executable,
        "benchmarks/step_operations.py",
        *("--method", "ds4d-base", "--frames", "3", "--resolution", "32", "--workdir", str(tmp_path / "work")),
        *("--static-steps", "4", "--warmup-steps", "3", "--count-steps", "2", "--output", str(out)),
    ]
    result = subprocess.run(command, cwd=ROOT, env=_script_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(out.read_text())
    parts = record["operations_per_step"]
    for part in ("graphed: deformation", "graphed: image losses", "raster", "optimiser", "densification", "rest"):
        assert parts.get(part, 0) > 0, part
    for part in ("graphed: deformation", "graphed: image losses", "raster"):  # their backward found its part
        assert parts.get(f"backward: {part}", 0) > 0, part
    assert record["total_per_step"] == pytest.approx(sum(parts.values()), abs=0.5)
    assert 0 < record["graph_share"] < record["graph_share_without_raster"] < 1
