"""Writers of Gaussian-splat files for ``ds4d-export``: one frame of Gaussians, as arrays, per file.

* :mod:`~ds4d_ns.exporting.splat_frame`: :class:`SplatFrame`, the Gaussians of one time step in the
  conventions of the 3D Gaussian Splatting PLY (logit opacity, log scales, wxyz quaternions), and
  its construction from a trained model.
* :mod:`~ds4d_ns.exporting.ply`: the standard 3D Gaussian Splatting PLY layout and its writer.
* :mod:`~ds4d_ns.exporting.spz`: Niantic's compressed SPZ format, written through the ``gsply``
  package when it is installed.
* :mod:`~ds4d_ns.exporting.manifest`: frame file names and the sequence's ``manifest.json``.

Nothing here imports torch at module import time except :mod:`~ds4d_ns.exporting.splat_frame`.
"""
