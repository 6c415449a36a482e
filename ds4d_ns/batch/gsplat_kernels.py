"""gsplat's CUDA kernels loaded once in the batch's own process, before parallel clips start.

gsplat installed from PyPI (the 1.4.0 that nerfstudio pins) compiles its CUDA code on first use, a
few minutes with ten compiler jobs. Each process that imports it first deletes the build folder's lock
file (so that an interrupted build cannot block it), which also defeats the lock between processes:
clips started together on a machine where the kernels are not yet built each start the whole build in
the same folder. On the GPU machine ten such clips ran up to a hundred compiler jobs, four of the
processes were killed, the build failed and no clip trained (``benchmarks/RESULTS.md``). Built once beforehand,
every clip only loads the finished library.
"""

from __future__ import annotations

import importlib

from nerfstudio.utils.rich_utils import CONSOLE

from ds4d_ns.errors import UserError

BACKEND_MODULE = "gsplat.cuda._backend"
"""gsplat's module that builds (on first use) and loads its CUDA library as ``_C``."""


def load_gsplat_kernels() -> bool:
    """Build (first time) or load gsplat's CUDA library in this process; False where there is no CUDA.

    Raises:
        UserError: CUDA is there but the library could not be built or loaded (the message says how to
            see gsplat's own build error).
    """
    import torch

    if not torch.cuda.is_available():
        return False
    CONSOLE.log("Loading gsplat's CUDA kernels before the clips start (the first time builds them: minutes)")
    try:
        backend = importlib.import_module(BACKEND_MODULE)
    except Exception as err:  # a failed build surfaces as whatever the compiler step raised
        raise UserError(f"gsplat's CUDA kernels could not be built: {type(err).__name__}: {err}") from err
    if getattr(backend, "_C", None) is None:
        raise UserError(
            "gsplat's CUDA kernels are not available (no CUDA compiler found, or the build failed); run "
            f"`python -c 'from {BACKEND_MODULE} import _C'` to see gsplat's message"
        )
    return True
