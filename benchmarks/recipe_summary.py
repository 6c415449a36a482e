"""One line per train_recipe.py record: times, quality, size (the shell benchmarks print it after each run).

python benchmarks/recipe_summary.py OUT/recipe-TAG.json [...]
"""

from __future__ import annotations

import json
import sys


def summary(record: dict) -> str:
    """Tag, method, CUDA graphs, train time, median steps and their 1000 + 6000 projection, eval quality,
    Gaussians, peak memory and graph captures of one record."""
    static, dynamic = record.get("median_static_step_ms") or 0.0, record["median_dynamic_step_ms"]
    quality = record["eval"]
    return (
        f"{record['tag']:14s} {record['method']:9s} graphs={record.get('cuda_graphs')} train "
        f"{record['train_seconds']} s, median static {static} ms, dynamic {dynamic} ms, projected "
        f"{round((1000 * static + 6000 * dynamic) / 1000, 1)} s | psnr {quality.get('psnr', 0):.2f} ssim "
        f"{quality.get('ssim', 0):.4f} psnr_moving {quality.get('psnr_moving', float('nan')):.2f} | "
        f"{record['num_gaussians']} Gaussians, {record['peak_gpu_memory_gib']} GiB, "
        f"captures {record.get('cuda_graph_captures')}"
    )


if __name__ == "__main__":
    for path in sys.argv[1:]:
        try:
            with open(path) as file:
                print(summary(json.load(file)))
        except (OSError, KeyError, ValueError) as err:
            print(f"{path}: no summary ({type(err).__name__}: {err})")
