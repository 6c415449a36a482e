"""``ds4d-eval``'s output files: ``metrics.json`` (means, settings, versions) and ``per_frame.csv``.

Both are written atomically (``ds4d_ns.io.atomic``). JSON has no infinity: non-finite numbers (the
PSNR of identical frames) are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``, which
``float()`` reads back; the CSV writes them the same way.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import math
import platform
from pathlib import Path
from typing import Any, Dict, Tuple

from ds4d_ns.evaluation.protocol import HIGHER_IS_BETTER, METRICS
from ds4d_ns.evaluation.score import FRAME_METRICS, EvalResult
from ds4d_ns.io.atomic import atomic_output

METRICS_NAME = "metrics.json"
"""The summary file in the output folder."""
PER_FRAME_NAME = "per_frame.csv"
"""The per view and frame table in the output folder."""
VERSIONED_PACKAGES = (
    "ds4d-ns",
    "torch",
    "torchvision",
    "torchmetrics",
    "transformers",
    "cd-fvd",
    "torch-fidelity",
    "numpy",
    "pillow",
)
"""Packages whose versions change numbers, recorded in every report."""


def versions() -> Dict[str, str]:
    """Python's and each of :data:`VERSIONED_PACKAGES`' version (``"not installed"`` where missing)."""
    found = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as strings and numpy scalars as Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def report_content(result: EvalResult, header: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON summary: ``header`` (tool, mode, inputs) first, then results, settings and versions."""
    content = dict(header)
    content["means"] = {m: result.means.get(m) for m in METRICS}
    content["unavailable"] = {m: result.unavailable[m] for m in METRICS if m in result.unavailable}
    content["higher_is_better"] = dict(HIGHER_IS_BETTER)
    content["counts"] = result.counts
    content["per_view"] = result.per_view
    if result.fid_per_frame is not None:
        content["fid_per_frame"] = result.fid_per_frame
    content["settings"] = settings
    content["versions"] = versions()
    return json_safe(content)


def write_report(
    out_dir: Path, result: EvalResult, header: Dict[str, Any], settings: Dict[str, Any]
) -> Tuple[Path, Path]:
    """Write ``metrics.json`` and ``per_frame.csv`` into ``out_dir`` atomically; returns their paths."""
    out_dir = Path(out_dir)
    summary, table = out_dir / METRICS_NAME, out_dir / PER_FRAME_NAME
    with atomic_output(summary) as tmp:
        Path(tmp).write_text(json.dumps(report_content(result, header, settings), indent=2, allow_nan=False) + "\n")
    columns = ["view", "frame", "time"] + [m for m in FRAME_METRICS if any(m in row for row in result.rows)]
    with atomic_output(table, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in result.rows:
                writer.writerow({key: "" if row.get(key) is None else json_safe(row.get(key)) for key in columns})
    return summary, table
