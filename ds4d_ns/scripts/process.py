"""``ds4d-process VIDEO_OR_FRAME_DIR OUT``: the ``ns-process-data`` of ds4d."""

from __future__ import annotations

import sys

import tyro
from nerfstudio.utils.rich_utils import CONSOLE

from ds4d_ns.process.frames import InputError
from ds4d_ns.process.run import ProcessConfig, process


def entrypoint() -> None:
    """Console entry point of ``ds4d-process``: input problems end with their message, not a traceback."""
    from ds4d_ns.process.zero123plus import PseudoViewWeightsUnavailable

    tyro.extras.set_accent_color("bright_yellow")
    config = tyro.cli(ProcessConfig)
    try:
        process(config)
    except (InputError, FileExistsError, PseudoViewWeightsUnavailable) as err:
        CONSOLE.print(f"[bold red]ds4d-process: {err}")
        sys.exit(2)


if __name__ == "__main__":
    entrypoint()
