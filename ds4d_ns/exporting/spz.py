"""Niantic's compressed SPZ splat format, written through the ``gsply`` package (an optional dependency).

SPZ (github.com/nianticlabs/spz, README "File Format"): a gzip stream of a 16-byte header
(magic ``NGSP``, version, point count, SH degree, fractional bits, flags) followed by the
attributes quantised to bytes (24-bit fixed-point positions, 8-bit opacity, colour, log scale
and SH, smallest-three quaternions from version 3). It is typically about ten times smaller than
the PLY. ``gsply`` (PyPI, MIT) writes version 3 from arrays in the PLY conventions; no other
maintained writer installs from PyPI on Python 3.11 here (``spz`` 0.0.1 is a Rust source
package that needs network access to crates.io to build).

Coordinates are written as they are, with no conversion to SPZ's internal RUB axes: SuperSplat's
reader (playcanvas/splat-transform, ``src/lib/readers/read-spz.ts``) applies none either, so a
frame's SPZ and PLY open in the same place there.
"""

from __future__ import annotations

from pathlib import Path

from ds4d_ns.errors import UserError
from ds4d_ns.exporting.splat_frame import SplatFrame
from ds4d_ns.io.atomic import atomic_output

SPZ_PACKAGE = "gsply"
"""The PyPI package that writes SPZ files."""
SPZ_VERSION = 3
"""SPZ version written: the gzip container that every SPZ reader of versions 2 to 4 opens."""


class SpzUnavailable(UserError):
    """SPZ output was asked for and its writer is not installed."""


def require_spz_writer() -> None:
    """Raise :class:`SpzUnavailable` (saying how to install it) unless the SPZ writer imports."""
    try:
        import gsply  # noqa: F401
    except ImportError as err:
        raise SpzUnavailable(
            f"--spz needs the {SPZ_PACKAGE} package ({err}): install it with `pip install {SPZ_PACKAGE}`, "
            "or export without --spz (the PLY sequence needs nothing more)"
        ) from err


def write_spz_atomic(path: Path, frame: SplatFrame) -> None:
    """Write ``frame`` as an SPZ (version 3) file to ``path`` (a complete file or none)."""
    require_spz_writer()
    import gsply

    data = gsply.GSData(
        means=frame.means,
        scales=frame.log_scales,
        quats=frame.quats_wxyz,
        opacities=frame.opacity_logits,
        sh0=frame.sh_dc,
        shN=frame.sh_rest,
    )
    with atomic_output(Path(path)) as tmp:
        gsply.write_spz(tmp, data, version=SPZ_VERSION)
