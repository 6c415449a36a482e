"""``ds4d-batch``: many clips, each processed, trained, evaluated, rendered and exported, one Ray task per clip.

* :mod:`ds4d_ns.batch.jobs`: reading JOBS (a CSV or a folder of clips) into :class:`~ds4d_ns.batch.jobs.ClipJob`
  entries, every problem named before any work.
* :mod:`ds4d_ns.batch.manifest`: the batch manifest in OUT, each clip's state (pending, running, done, failed).
* :mod:`ds4d_ns.batch.clip`: one clip's whole job through the commands' Python entry points.
* :mod:`ds4d_ns.batch.gsplat_kernels`: gsplat's CUDA kernels built once before parallel local clips start.
* :mod:`ds4d_ns.batch.runner`: running the clips on Ray (a local instance or a cluster) or one after the other
  in-process, with a progress bar, and the summary table.
"""
