"""``ds4d-batch JOBS OUT``: many clips through the whole job, one Ray task per clip (see ``ds4d_ns.batch``).

Examples::

    ds4d-batch clips/ out/                                    # a local Ray instance (or in-process without Ray)
    ray start --head && ds4d-batch jobs.csv out/ --ray-address auto --gpus-per-job 1
    ds4d-batch clips/ out/ --method ds4d-base-cpu --gpus-per-job 0 --train-args="--max-num-iterations 300"

Exit status: 0 when every clip is done, 1 when one failed (the summary names it and the manifest holds its
traceback; a rerun retries it), 2 for a user error found before any work.
"""

from __future__ import annotations

import sys

import tyro

from ds4d_ns.batch.runner import BatchConfig, run_batch
from ds4d_ns.errors import exit_on_user_error

TOOL = "ds4d-batch"


def entrypoint() -> None:
    """Console entry point of ``ds4d-batch``."""
    tyro.extras.set_accent_color("bright_yellow")
    config = tyro.cli(BatchConfig)
    with exit_on_user_error(TOOL):
        rows = run_batch(config)
    if any(row["status"] != "done" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    entrypoint()
