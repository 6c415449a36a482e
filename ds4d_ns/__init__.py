"""ds4d-ns: DS4D video-to-4D generation as a Nerfstudio method plugin.

Nerfstudio imports every installed plugin's entry points on every ``ns-train``, so nothing heavy
(diffusers, transformers, gsplat kernels) is imported at package import time.
"""

__version__ = "0.1.0"
