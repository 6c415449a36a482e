"""Benchmark: the ds4d recipe on a ds4d-synth scene; eval-view quality, wall time, peak GPU memory.

Trains through the same code path as ``ns-train`` (``TrainerConfig.setup`` -> ``Trainer.train``)
and writes one JSON record with the device, versions, date and command. Run on a GPU machine::

    python benchmarks/train_recipe.py --scene windmill --output results.json

Targets of the end-to-end issue: eval PSNR >= 28 dB, under 10 minutes on one H100, under 8 GB.

``--method`` picks ds4d (DSFD + TSSF-DA), ds4d-ga or ds4d-base (no frame features). Where the
DINOv2 weights cannot be downloaded, ``--feature-weights random-init`` builds its architecture with
random weights; the record and every log line then name the backbone "[RANDOM weights, not pretrained]".
Besides whole-image PSNR the record has the PSNR of the dynamic region of each eval view (pixels
whose ground truth changes over the clip) and the median time of a dynamic-stage step (GPU time
between CUDA events around each iteration: the run is never synchronised for the measurement).
``--model-set cuda_graphs=False`` times the eager step.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import platform
import sys
import time
from pathlib import Path


def eval_psnr_per_view(pipeline) -> dict:
    """Mean PSNR of each eval camera (view_index) over the frames, to see which views are weak."""
    import torch

    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    cameras = dataset.cameras
    sums: dict = {}
    model.eval()
    with torch.no_grad():
        for index, data in enumerate(pipeline.datamanager.cached_eval):
            outputs = model.get_outputs_for_camera(cameras[index : index + 1])
            metrics, _ = model.get_image_metrics_and_images(outputs, {"image": data["image"].to(model.device)})
            view = int(cameras.metadata["view_index"][index])
            sums.setdefault(view, []).append(metrics["psnr"])
    return {str(view): round(sum(values) / len(values), 3) for view, values in sorted(sums.items())}


def eval_psnr_dynamic_region(pipeline, threshold: float = 0.05, dilate_px: int = 2) -> dict:
    """PSNR over the pixels of each eval view whose ground truth moves, averaged over frames and views.

    The region of a view is fixed for the clip (``ds4d_ns.evaluation.motion_region.moving_region``).
    """
    import torch

    from ds4d_ns.evaluation.motion_region import moving_region

    model, dataset = pipeline.model, pipeline.datamanager.eval_dataset
    cameras = dataset.cameras
    by_view: dict = {}
    model.eval()
    with torch.no_grad():
        for index, data in enumerate(pipeline.datamanager.cached_eval):
            outputs = model.get_outputs_for_camera(cameras[index : index + 1])
            batch = {"image": data["image"].to(model.device)[None]}
            gt, _ = model._ground_truth(batch, torch.ones(3, device=model.device))
            view = int(cameras.metadata["view_index"][index])
            by_view.setdefault(view, []).append((gt[0], outputs["rgb"]))
    psnrs, fractions = [], []
    for pairs in by_view.values():
        gts = torch.stack([gt for gt, _ in pairs])
        preds = torch.stack([pred for _, pred in pairs])
        region = moving_region(gts, threshold=threshold, dilate_px=dilate_px)
        fractions.append(float(region.float().mean()))
        if region.sum() == 0:
            continue
        for gt, pred in zip(gts, preds):
            mse = (gt[region] - pred[region]).square().mean().clamp_min(1e-10)
            psnrs.append(float(-10.0 * torch.log10(mse)))
    return {
        "psnr": round(sum(psnrs) / max(len(psnrs), 1), 3),
        "pixel_fraction": round(sum(fractions) / max(len(fractions), 1), 4),
    }


def moving_psnr_by_frame(pipeline, split: str) -> dict:
    """PSNR on the moving region (the datamanager's ``motion_mask``) of every view of a split, pooled
    over the views of each frame: ``{"mean": ..., "by_frame": {frame: psnr}}``; the motion numbers."""
    import torch

    from ds4d_ns.evaluation.motion_region import composite_on_white, masked_psnr

    model, datamanager = pipeline.model, pipeline.datamanager
    dataset = datamanager.train_dataset if split == "train" else datamanager.eval_dataset
    entries = datamanager.cached_train if split == "train" else datamanager.cached_eval
    cameras = dataset.cameras
    frames = cameras.metadata["frame_index"].view(-1).tolist()
    pairs: dict = {}
    model.eval()
    with torch.no_grad():
        for index, entry in enumerate(entries):
            if "motion_mask" not in entry:
                return {}
            outputs = model.get_outputs_for_camera(cameras[index : index + 1].to(model.device))
            truth = composite_on_white(entry["image"].to(model.device))
            pairs.setdefault(frames[index], []).append((outputs["rgb"], truth, entry["motion_mask"].to(model.device)))
    by_frame = {}
    for frame, items in sorted(pairs.items()):
        pred, truth, mask = (torch.stack(column) for column in zip(*items))
        by_frame[str(frame)] = round(float(masked_psnr(pred, truth, mask)), 3)
    finite = [value for value in by_frame.values() if value == value]
    return {"mean": round(sum(finite) / max(len(finite), 1), 3), "by_frame": by_frame}


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The scene, schedule and method options shared by the training benchmarks."""
    parser.add_argument("--scene", default="windmill")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--pseudo-noise", type=float, default=0.0)
    parser.add_argument("--static-steps", type=int, default=1000)
    parser.add_argument("--dynamic-steps", type=int, default=6000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ds4d-bench"))
    parser.add_argument("--tag", default="default", help="name of this variant in the results")
    parser.add_argument(
        "--model-set", action="append", default=[], metavar="FIELD=VALUE", help="override a Ds4dModelConfig field"
    )
    parser.add_argument(
        "--pipeline-set", action="append", default=[], metavar="FIELD=VALUE", help="override a pipeline config field"
    )
    parser.add_argument(
        "--features-set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a FrameFeaturesConfig field (pipeline.datamanager.frame_features)",
    )
    parser.add_argument("--deformation-lr-scale", type=float, default=1.0, help="multiply the deformation lrs")
    parser.add_argument("--method", choices=["ds4d", "ds4d-ga", "ds4d-base"], default="ds4d")
    parser.add_argument("--feature-weights", choices=["pretrained", "random-init"], default="pretrained")
    parser.add_argument(
        "--priors",
        choices=["off", "pretrained", "random-init"],
        default="off",
        help="LPIPS (VGG) + Zero123 SDS; random-init builds full-size networks with random weights (timing only)",
    )


def build_trainer(args: argparse.Namespace):
    """Synthesise the scene (cached in ``--workdir``) and set up the trainer as ``ns-train`` does.

    Returns the trainer and the seconds the synthesis took."""
    from ds4d_ns.method_configs.ds4d_config import make_ds4d_config
    from ds4d_ns.scripts.synth import SynthConfig
    from ds4d_ns.scripts.synth import main as synth_main

    data = args.workdir / f"{args.scene}-{args.frames}x{args.resolution}-noise{args.pseudo_noise}"
    started = time.perf_counter()
    synth_main(
        SynthConfig(
            output=data,
            scene=args.scene,
            frames=args.frames,
            resolution=args.resolution,
            pseudo_noise=args.pseudo_noise,
        )
    )
    synth_seconds = time.perf_counter() - started

    method_args = {"ds4d": {}, "ds4d-ga": {"fusion": "ga"}, "ds4d-base": {"frame_features": "none"}}[args.method]
    config = make_ds4d_config(
        method_name=args.method,
        static_steps=args.static_steps,
        dynamic_steps=args.dynamic_steps,
        priors=args.priors != "off" and args.method != "ds4d-base",
        **method_args,
    )
    config.pipeline.datamanager.frame_features.extractor.weights = args.feature_weights
    if args.priors != "off":
        config.pipeline.model.lpips_backbone = args.priors
        config.pipeline.model.sds.weights = args.priors
    config.output_dir = args.workdir / "outputs"
    config.experiment_name = f"{data.name}-{args.tag}"
    config.timestamp = "bench"
    config.vis = "tensorboard"
    config.steps_per_eval_image = 10**9
    config.steps_per_eval_all_images = 10**9
    config.pipeline.datamanager.data = data
    config.pipeline.model.eval_lpips = False
    for assignment in args.model_set:
        name, value = assignment.split("=", 1)
        setattr(config.pipeline.model, name, ast.literal_eval(value))
    for assignment in args.pipeline_set:
        name, value = assignment.split("=", 1)
        setattr(config.pipeline, name, ast.literal_eval(value))
    for assignment in args.features_set:
        name, value = assignment.split("=", 1)
        setattr(config.pipeline.datamanager.frame_features, name, ast.literal_eval(value))
    for group in ("deformation_grid", "deformation_mlp"):
        optimizer = config.optimizers[group]
        optimizer["optimizer"].lr *= args.deformation_lr_scale
        optimizer["scheduler"].lr_final *= args.deformation_lr_scale
    import torch

    if not torch.cuda.is_available():  # the profiler's CPU smoke run
        config.machine.device_type = "cpu"
        config.pipeline.datamanager.cache_images = "cpu"
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer, synth_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    import gsplat
    import nerfstudio
    import torch

    trainer, synth_seconds = build_trainer(args)
    step_events: list = []
    train_iteration = trainer.train_iteration

    def timed_iteration(step: int):
        # CUDA events, not a synchronisation around each step: the host may run ahead of the GPU, as it
        # does in ns-train (the records before 2026-12-08 synchronised twice a step, which slowed the run)
        if not torch.cuda.is_available():  # a CPU smoke run: wall time
            begin_s = time.perf_counter()
            result = train_iteration(step)
            step_events.append(1000 * (time.perf_counter() - begin_s))
            return result
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        result = train_iteration(step)
        end.record()
        step_events.append((begin, end))
        return result

    trainer.train_iteration = timed_iteration
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    if cuda:
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - started
    step_ms = [event if isinstance(event, float) else event[0].elapsed_time(event[1]) for event in step_events]
    model = trainer.pipeline.model
    graph_captures = {
        "deformation": model.deformation_step.captures,
        "image_losses": model.image_losses.captures,
    }
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    metrics = trainer.pipeline.get_average_eval_image_metrics()
    per_view = eval_psnr_per_view(trainer.pipeline)
    dynamic_region = eval_psnr_dynamic_region(trainer.pipeline)
    dynamic_steps_ms = sorted(step_ms[args.static_steps :]) or [0.0]
    model_config = trainer.pipeline.model.config
    feature_config = trainer.pipeline.datamanager.config.frame_features
    features = feature_config.extractor.describe() if feature_config.enabled else "none"

    record = {
        "benchmark": "train_recipe",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "gsplat": gsplat.__version__,
            "nerfstudio": getattr(nerfstudio, "__version__", "1.1.5"),
        },
        "scene": {
            "name": args.scene,
            "frames": args.frames,
            "resolution": args.resolution,
            "pseudo_noise": args.pseudo_noise,
        },
        "steps": {"static": args.static_steps, "dynamic": args.dynamic_steps},
        "synth_seconds": round(synth_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "seconds_per_step_ms": round(1000 * train_seconds / (args.static_steps + args.dynamic_steps), 2),
        "peak_gpu_memory_gib": round(peak_gib, 3),
        "num_gaussians": int(trainer.pipeline.model.num_points),
        "median_dynamic_step_ms": round(dynamic_steps_ms[len(dynamic_steps_ms) // 2], 2),
        "tag": args.tag,
        "method": args.method,
        "run_config": str(trainer.config.get_base_dir() / "config.yml"),
        "frame_features": feature_config.mode,
        "feature_fusion": feature_config.fusion if feature_config.enabled else None,
        "feature_backbone": features,
        "priors": "off" if args.priors == "off" else f"LPIPS VGG ({args.priors}) + SDS {model_config.sds.describe()}",
        "median_static_step_ms": round(sorted(step_ms[: args.static_steps])[args.static_steps // 2], 2)
        if args.static_steps
        else None,
        "cuda_graphs": bool(model_config.cuda_graphs),
        "cuda_graph_captures": graph_captures,
        "model_overrides": args.model_set,
        "pipeline_overrides": args.pipeline_set,
        "feature_overrides": args.features_set,
        "deformation_lr_scale": args.deformation_lr_scale,
        "eval": {key: round(float(value), 4) for key, value in metrics.items()},
        "eval_psnr_per_view": per_view,
        "eval_dynamic_region": dynamic_region,
        "train_motion": moving_psnr_by_frame(trainer.pipeline, "train"),
        "eval_motion": moving_psnr_by_frame(trainer.pipeline, "eval"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
