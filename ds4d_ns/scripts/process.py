"""``ds4d-process VIDEO_OR_FRAME_DIR OUT``: the ``ns-process-data`` of ds4d."""

from __future__ import annotations

import tyro

from ds4d_ns.process.run import ProcessConfig, process


def entrypoint() -> None:
    """Console entry point of ``ds4d-process``."""
    tyro.extras.set_accent_color("bright_yellow")
    process(tyro.cli(ProcessConfig))


if __name__ == "__main__":
    entrypoint()
