"""The quality-against-time plot: eval quality of the methods against their training time, from the benchmark records.

Reads ``benchmarks/results/methods-through-ds4d-eval-*.json`` (ds4d-eval model at 512 px on the four Consistent4D
views; runs alone or sharing the GPU through ds4d-batch) and ``option-sweep-noise1-*.json`` (the earlier option sweep,
nerfstudio's eval split at 256 px, three runs sharing an H100), and writes a PNG with whole-image PSNR and
moving-region PSNR against training seconds. Every point says how it was timed: a time measured while
runs shared the GPU is longer than the same run alone. Usage::

    python benchmarks/plot_quality_time.py --output benchmarks/quality_vs_time.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

RESULTS = Path(__file__).parent / "results"
COLOURS = {
    "ds4d-base": "tab:blue",
    "ds4d": "tab:red",
    "ds4d-ga": "tab:orange",
    "static": "tab:grey",
    "ds4d-base, motion weight 4": "tab:green",
}
"""One colour per method; the static baseline is ds4d-base trained on the middle frame only."""
SCENE_MARKERS = {"windmill": "o", "waving": "s"}
"""One marker per ds4d-synth scene."""
DS4D_EVAL = "ds4d-eval model, 512 px, 4 Consistent4D views (H200)"
NS_EVAL = "option sweep: nerfstudio eval split, 256 px (H100)"
"""The two protocols: points of the first are filled, of the second hollow."""
FINAL_STEP = 6999
"""Checkpoint step of a finished 1000 + 6000 recipe."""


def points() -> List[Dict]:
    """Every scored run: method, scene, pseudo noise, training seconds, whole-image and moving-region PSNR,
    the protocol that scored it and how many runs shared the GPU while it trained."""
    found: List[Dict] = []
    for path in sorted(RESULTS.glob("methods-through-ds4d-eval-*.json")):
        record = json.loads(path.read_text())
        for entry in record["alone"].values():
            found.append(
                {
                    "method": entry["method"],
                    "scene": entry["scene"],
                    "noise": entry["pseudo_noise"],
                    "seconds": entry["train_seconds"],
                    "psnr": entry["means"]["psnr"],
                    "moving": entry["means"]["psnr_moving"],
                    "protocol": DS4D_EVAL,
                    "sharing": 1,
                }
            )
        batch = record["batch_parallel"]
        for clip in batch["clips"]:
            scored = clip.get("eval") or {}
            if scored.get("checkpoint_step") != FINAL_STEP:
                continue  # stopped before the end of its training: no score, or not the recipe's
            method = {"static": "static", "motion4": "ds4d-base, motion weight 4"}.get(clip["tag"], clip["method"])
            found.append(
                {
                    "method": method,
                    "scene": clip["scene"],
                    "noise": clip["pseudo_noise"],
                    "seconds": clip["train_seconds_shared"],
                    "psnr": scored["means"]["psnr"],
                    "moving": scored["means"]["psnr_moving"],
                    "protocol": DS4D_EVAL,
                    "sharing": batch["sharing_clips"],
                }
            )
    for path in sorted(RESULTS.glob("option-sweep-noise1-*.json")):
        record = json.loads(path.read_text())
        if path.stem.endswith(("-linear", "-deformed")):
            continue  # option sweeps, not methods
        found.append(
            {
                "method": record["method"],
                "scene": record["scene"]["name"],
                "noise": record["scene"]["pseudo_noise"],
                "seconds": record["train_seconds"],
                "psnr": record["eval"]["psnr"],
                "moving": record["eval_dynamic_region"]["psnr"],
                "protocol": NS_EVAL,
                "sharing": 3,
            }
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "quality_vs_time.png")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for entry in points():
        column = 0 if entry["noise"] == 0 else 1
        colour = COLOURS[entry["method"]]
        style = {"color": colour} if entry["protocol"] == DS4D_EVAL else {"facecolors": "none", "edgecolors": colour}
        for row, key in enumerate(("psnr", "moving")):
            axis = axes[row][column]
            axis.scatter(entry["seconds"], entry[key], marker=SCENE_MARKERS[entry["scene"]], s=60, **style)
            # a training time measured while others shared the GPU is longer than the same run alone
            axis.annotate(
                f"x{entry['sharing']}",
                (entry["seconds"], entry[key]),
                textcoords="offset points",
                xytext=(5, 3),
                fontsize=6,
                color="dimgrey",
            )
    for column, title in enumerate(("clean pseudo views", "degraded pseudo views (--pseudo-noise 1.0)")):
        axes[0][column].set_title(title)
        axes[1][column].set_xlabel("training seconds (1000 + 6000 steps)")
    axes[0][0].set_ylabel("eval PSNR, whole image (dB)")
    axes[1][0].set_ylabel("eval PSNR, moving region (dB)")
    for row in axes:
        for axis in row:
            axis.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=m) for m, c in COLOURS.items()]
    handles += [
        plt.Line2D([], [], color="black", marker=k, linestyle="", label=scene) for scene, k in SCENE_MARKERS.items()
    ]
    handles += [
        plt.Line2D([], [], color="black", marker="o", linestyle="", label=DS4D_EVAL),
        plt.Line2D([], [], markeredgecolor="black", markerfacecolor="none", marker="o", linestyle="", label=NS_EVAL),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.suptitle(
        "ds4d-synth windmill and waving, 30 frames at 256 px: quality against training time\n"
        "(xN: N runs shared the GPU while this one trained)"
    )
    figure.tight_layout(rect=(0, 0.1, 1, 0.96))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
