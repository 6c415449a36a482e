"""Video files written atomically with PyAV (no ffmpeg binary needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ds4d_ns.io.atomic import atomic_output


def write_video_atomic(path: Path, frames: Iterable[np.ndarray], fps: int = 30) -> None:
    """Encode uint8 ``[H, W, 3]`` frames as H.264 mp4 at ``path``; nothing appears until done."""
    import av

    with atomic_output(Path(path), suffix=Path(path).suffix) as tmp:
        with av.open(tmp, mode="w") as container:
            stream = None
            for frame in frames:
                if stream is None:
                    stream = container.add_stream("libx264", rate=fps)
                    # yuv420p needs even sizes; every player reads it
                    stream.height, stream.width = (
                        frame.shape[0] - frame.shape[0] % 2,
                        frame.shape[1] - frame.shape[1] % 2,
                    )
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "18"}
                frame = np.ascontiguousarray(frame[: stream.height, : stream.width, :3])
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            if stream is None:
                raise ValueError(f"no frames to write to {path}")
            container.mux(stream.encode(None))


def read_video_frames(path: Path) -> np.ndarray:
    """Decode every frame of a video as uint8 ``[T, H, W, 3]`` (for checks and tests)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
