"""A first run as a new user makes it: no GPU, no internet, mistakes in arguments and data.

Every user error ends in one line naming the file or flag, exit status 2 and no traceback; a
configuration asking for CUDA trains on the CPU when there is none; missing weights are reported
all at once; runs are named after their dataset with the dataset path stored absolute. Two tests
run the real ``ns-train`` console script (about 15 s each, mostly nerfstudio's import).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ds4d_parts
from nerfstudio.configs.base_config import MachineConfig

from ds4d_ns.data.dataset_format import TRANSFORMS_NAME
from ds4d_ns.errors import UserError, WeightsUnavailable
from ds4d_ns.method_configs.ds4d_config import make_ds4d_config

BIN = Path(sys.executable).parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_tool(args, cwd: Path, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200", **env}
    # One stream, in the order a terminal shows it.
    return subprocess.run(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=environment
    )


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = [ANSI.sub("", line).strip() for line in result.stdout.splitlines()]
    return [line for line in lines if line][-1]


def no_cuda_training_config(data: Path, method: str = "ds4d-base", **factory_args):
    config = make_ds4d_config(method_name=method, **factory_args)
    ds4d_parts(config)[0].dataparser.data = data
    return config


# ------------------------------------------------------------------ ds4d-synth arguments
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"frames": 0}, "--frames must be at least 1, got 0"),
        ({"scene": "castle"}, "--scene 'castle': unknown scene; choose one of"),
        ({"resolution": 4}, "--resolution must be at least 8"),
        ({"num_points": 0}, "--num-points must be at least 4"),
        ({"pseudo_noise": float("nan")}, "--pseudo-noise must be a finite number"),
        ({"output": "a_file"}, "OUT .*a_file is a file"),
        ({"output": "a_file/data"}, "OUT .*a_file/data cannot be made: .*a_file is a file"),
    ],
)
def test_bad_synth_arguments_are_one_user_error_before_any_work(tmp_path, overrides, message):
    from ds4d_ns.scripts.synth import SynthConfig, main

    (tmp_path / "a_file").write_text("the user's file")
    output = tmp_path / overrides.pop("output", "data")
    with pytest.raises(UserError, match=message):
        main(SynthConfig(output=output, **overrides))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    assert (tmp_path / "a_file").read_text() == "the user's file"


def test_ds4d_synth_prints_one_line_and_exits_2(tmp_path):
    result = run_tool([str(BIN / "ds4d-synth"), str(tmp_path / "data"), "--frames", "0"], tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stdout
    assert last_line(result).startswith("ds4d-synth: --frames must be at least 1")


# ------------------------------------------------------------------ device
def test_a_cuda_configuration_moves_to_the_cpu_without_cuda_and_says_so():
    from ds4d_ns.run_setup import pick_device

    machine = MachineConfig(device_type="cuda", num_devices=2)
    note = pick_device(machine, cuda_available=False)
    assert machine.device_type == "cpu" and machine.num_devices == 1
    assert "No CUDA device" in note and "ds4d-base-cpu" in note and "\n" not in note
    kept = MachineConfig(device_type="cuda")
    assert pick_device(kept, cuda_available=True) is None and kept.device_type == "cuda"
    mps = MachineConfig(device_type="mps")
    assert pick_device(mps, cuda_available=False) is None and mps.device_type == "mps"


def test_cpu_caching_does_not_pin_memory_without_cuda(fake_dataset):
    from ds4d_ns.data.datamanager import Ds4dDatamanagerConfig
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig

    # "cpu" caching pins memory, which needs CUDA; nerfstudio also picks it by itself past 500 images.
    config = Ds4dDatamanagerConfig(dataparser=Ds4dDataParserConfig(data=fake_dataset()), cache_images="cpu")
    datamanager = config.setup(device="cpu", test_mode="val")
    assert datamanager.cached_train[0]["image"].device.type == "cpu"


# ------------------------------------------------------------------ run name and data path
def test_runs_are_named_after_the_dataset_and_store_its_path_absolute(fake_dataset, tmp_path, monkeypatch):
    data = fake_dataset()
    monkeypatch.chdir(data.parent)
    config = no_cuda_training_config(Path(data.name))
    config.output_dir = Path("outputs")
    config.timestamp = "run"
    config.save_config()
    assert config.experiment_name == data.name
    saved = yaml.load((tmp_path / "outputs" / data.name / "ds4d-base" / "run" / "config.yml").read_text(), yaml.Loader)
    assert saved.pipeline.datamanager.dataparser.data == data.resolve()
    named = no_cuda_training_config(data / TRANSFORMS_NAME)  # a transforms.json file names its folder too
    named.experiment_name = "mine"  # an explicit --experiment-name wins
    named.output_dir, named.timestamp = tmp_path / "outputs", "run"
    named.save_config()
    assert named.experiment_name == "mine"


# ------------------------------------------------------------------ weights
@pytest.fixture
def offline_torch_hub(tmp_path, monkeypatch):
    """No cached VGG16 and no way to download it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)


def test_missing_weights_are_reported_all_at_once_with_the_fallback_for_this_machine(offline_torch_hub):
    from ds4d_ns.scripts.weights import require_weights

    pipeline = make_ds4d_config(priors=True).pipeline
    with pytest.raises(WeightsUnavailable) as error:
        require_weights(pipeline, cuda=False)
    message = str(error.value)
    assert "\n" not in message
    for expected in ("DINOv2 'facebook/dinov2-small'", "VGG16", "Zero123 'ashawkey/zero123-xl-diffusers'"):
        assert expected in message
    for switch in ("datamanager.frame-features.mode none", "model.lpips-loss-weight 0", "model.sds.weight 0"):
        assert f"--pipeline.{switch}" in message
    assert "`ns-train ds4d-base-cpu`" in message
    with pytest.raises(WeightsUnavailable, match=r"`ns-train ds4d-base`"):
        require_weights(pipeline, cuda=True)


def test_ns_train_set_up_stops_on_missing_weights_with_one_line_and_exit_2(fake_dataset, offline_torch_hub, capsys):
    config = no_cuda_training_config(fake_dataset(), "ds4d-cpu", static_steps=100, dynamic_steps=300, cpu=True)
    with pytest.raises(SystemExit) as stop:
        config.pipeline.setup(device="cpu", test_mode="val")
    assert stop.value.code == 2
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert printed[-1].startswith("ns-train: pretrained weights missing: DINOv2")
    assert "VGG16" in printed[-1] and "ds4d-base-cpu" in printed[-1]


# ------------------------------------------------------------------ the real ns-train
def test_ns_train_names_a_dataset_error_in_its_last_line_and_exits_2(fake_dataset, tmp_path):
    data = fake_dataset()
    meta = json.loads((data / TRANSFORMS_NAME).read_text())
    meta["frames"][2]["transform_matrix"] = [[0.0] * 4] * 4
    (data / TRANSFORMS_NAME).write_text(json.dumps(meta))
    args = [str(BIN / "ns-train"), "ds4d-base", "--vis", "tensorboard", "--output-dir", str(tmp_path / "outputs")]
    result = run_tool(args + ["ds4d-data", "--data", str(data)], tmp_path)
    assert result.returncode == 2, result.stdout[-3000:]
    assert "Traceback" not in result.stdout
    line = last_line(result)
    assert line.startswith("ns-train: ") and "transforms.json: frames[2]" in line and "not a rotation" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback is for machines without CUDA")
def test_ns_train_of_a_cuda_method_trains_on_the_cpu_and_files_the_run_under_the_dataset(fake_dataset):
    data = fake_dataset()
    args = [str(BIN / "ns-train"), "ds4d-base", "--max-num-iterations", "2", "--vis", "tensorboard"]
    args += ["--output-dir", "outputs", "--timestamp", "run", "ds4d-data", "--data", data.name]
    result = run_tool(args, data.parent)
    output = ANSI.sub("", result.stdout)
    assert result.returncode == 0, output[-3000:]
    assert "No CUDA device: training on the CPU" in output
    run = data.parent / "outputs" / data.name / "ds4d-base" / "run"
    assert list((run / "nerfstudio_models").glob("step-*.ckpt"))
    config = yaml.load((run / "config.yml").read_text(), yaml.Loader)
    assert config.pipeline.datamanager.dataparser.data == data.resolve()
