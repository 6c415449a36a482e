"""``ds4d-process VIDEO_OR_FRAME_DIR OUT``: the ``ns-process-data`` of ds4d."""

from __future__ import annotations

import tyro

from ds4d_ns.errors import exit_on_user_error
from ds4d_ns.process.run import ProcessConfig, process


def entrypoint() -> None:
    """Console entry point of ``ds4d-process``: user errors end with one line and exit status 2."""
    tyro.extras.set_accent_color("bright_yellow")
    with exit_on_user_error("ds4d-process"):
        process(tyro.cli(ProcessConfig))


if __name__ == "__main__":
    entrypoint()
