"""Choices that several configurations and functions share, named once as ``Literal`` aliases.

A choice used by one module only is defined there (``ReferenceMode`` in ``features/dsfd.py``,
``Role`` in ``data/dataset_format.py``).
"""

from __future__ import annotations

from typing import Literal

FeatureMode = Literal["none", "frame", "dsfd"]
"""Frame features fed to the deformation: none, DINOv2 frame features, or DSFD's decoupled features."""
ReductionMode = Literal["pca", "linear"]
"""Channel reduction of the frame features: PCA fitted once, or a learnt linear layer."""
SamplingPoints = Literal["canonical", "deformed"]
"""Where frame features are sampled: the canonical Gaussian centres or the centres deformed to the step's time."""
WeightsMode = Literal["pretrained", "random-init"]
"""Weights of a pretrained network: the published ones, or random ones (tests and timing only)."""
TestMode = Literal["test", "val", "inference"]
"""nerfstudio's set-up mode of a pipeline (``VanillaPipeline``, ``Trainer.setup``): which splits it loads."""
Zero123PlusRelease = Literal["v1.2", "v1.1"]
FusionMode = Literal["front", "mean", "ga", "da"]
"""TSSF's fusion of the views' features: the front view only, the plain mean, global-aware (ga) or
distance-aware (da) weights (``ds4d_ns.fields.tssf``; the frame-feature settings choose it)."""
"""Zero123++ release: sets the pseudo views' camera layout (``ds4d_ns.camera_layouts``)."""
