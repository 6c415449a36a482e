"""Nerfstudio cameras to the rasteriser's world-to-camera matrices.

Nerfstudio stores OpenGL camera-to-world matrices (camera looks down -z, y up); gsplat wants
OpenCV world-to-camera matrices (looks down +z, y down). Splatfacto's own helper is wrapped in
``torch.compile``, whose first call costs about 11 s on a CPU; this plain version costs nothing.
"""

from __future__ import annotations

from typing import Callable, Hashable, Tuple, TypeVar

import torch
from jaxtyping import Float
from torch import Tensor
from torch.utils.weak import WeakTensorKeyDictionary

T = TypeVar("T")


def opengl_c2w_to_opencv_viewmat(camera_to_worlds: Float[Tensor, "c 3 4"]) -> Float[Tensor, "c 4 4"]:
    """Invert OpenGL camera-to-world matrices into OpenCV world-to-camera matrices."""
    if camera_to_worlds.ndim != 3 or camera_to_worlds.shape[1:] != (3, 4):
        raise ValueError(f"camera_to_worlds must have shape (c, 3, 4), got {tuple(camera_to_worlds.shape)}")
    # OpenGL -> OpenCV axes: negate camera y and z (no constant tensor: copying one to the GPU syncs)
    rotation = torch.cat([camera_to_worlds[:, :3, :1], -camera_to_worlds[:, :3, 1:3]], dim=-1)
    translation = camera_to_worlds[:, :3, 3:4]
    rotation_inv = rotation.transpose(1, 2)
    viewmats = torch.zeros(
        camera_to_worlds.shape[0], 4, 4, device=camera_to_worlds.device, dtype=camera_to_worlds.dtype
    )
    viewmats[:, :3, :3] = rotation_inv
    viewmats[:, :3, 3:4] = -rotation_inv @ translation
    viewmats[:, 3, 3] = 1.0
    return viewmats


_VIEWMATS: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
"""World-to-camera matrices per camera-to-world tensor (with that tensor's version then)."""


def cached_viewmats(camera_to_worlds: Float[Tensor, "c 3 4"]) -> Float[Tensor, "c 4 4"]:
    """:func:`opengl_c2w_to_opencv_viewmat`, computed once per camera tensor until it is written to: training
    serves each frame's cameras as the same cached tensors at every step, and the conversion is some twenty
    operations (each a kernel launch on a GPU). Recomputed for a tensor that requires gradients. The result is
    shared between calls: read it, never write to it."""
    if camera_to_worlds.requires_grad:
        return opengl_c2w_to_opencv_viewmat(camera_to_worlds)
    return _once_per(
        _VIEWMATS, camera_to_worlds, camera_to_worlds._version, lambda: opengl_c2w_to_opencv_viewmat(camera_to_worlds)
    )


_INTRINSICS: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
"""Pinhole matrices per focal-length tensor (with the scale, the other tensors' ids and all their versions then)."""


def intrinsics_and_size(cameras, scale: float = 1.0) -> Tuple[Float[Tensor, "c 3 3"], int, int]:
    """Pinhole matrices of ``cameras`` and their image width and height, all scaled by ``scale``.

    What ``Cameras.rescale_output_resolution`` then ``get_intrinsics_matrices`` give (sizes truncated
    as nerfstudio does), without their cost on a GPU: nerfstudio fills a CPU matrix from the device's
    values and rescales in place, each a wait for the GPU; here the matrices are built on the
    cameras' device and the size is read back once (once per cached cameras in training). The matrices too are
    built once per cached cameras and scale (shared between calls: read them, never write to them). All cameras
    must share one size."""
    width, height = _image_size(cameras.width, cameras.height)
    values = [getattr(cameras, name) for name in ("fx", "fy", "cx", "cy")]

    def pinhole() -> Tensor:
        fx, fy, cx, cy = (value.view(-1) * scale for value in values)
        zero, one = torch.zeros_like(fx), torch.ones_like(fx)
        # float32 whatever the cameras hold, as nerfstudio's matrices (ns-render's camera paths are float64)
        return torch.stack([fx, zero, cx, zero, fy, cy, zero, zero, one], dim=-1).view(-1, 3, 3).float()

    key = (scale, *((id(value), value._version) for value in values[1:]), values[0]._version)
    return _once_per(_INTRINSICS, values[0], key, pinhole), int(width * scale), int(height * scale)


_SIZES: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
"""Image size read back per width tensor (with the versions of both tensors then)."""


def _image_size(width: Tensor, height: Tensor) -> Tuple[int, int]:
    """The first camera's width and height as numbers, read back once per pair of size tensors: training
    serves each frame's cameras as the same cached tensors at every step, and each read waits for the GPU."""

    def read() -> Tuple[int, int]:
        first_width, first_height = torch.stack([width.view(-1)[0], height.view(-1)[0]]).tolist()
        return int(first_width), int(first_height)

    return _once_per(_SIZES, width, (id(height), width._version, height._version), read)


def _once_per(table: WeakTensorKeyDictionary, tensor: Tensor, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, kept in ``table`` under ``tensor`` (dropped with it) and computed again when ``key`` (the
    versions, and ids of the other tensors it reads) differs from the one it was computed with."""
    known = table.get(tensor)
    if known is None or known[0] != key:
        known = (key, compute())
        table[tensor] = known
    return known[1]
