"""Playback cache: deformed Gaussians computed once per time and reused outside training.

Rendering a trained ds4d model is dominated by the deformation (HexPlane + MLP, and the frame
features with DSFD), not by the rasteriser (issue 12: 4.5-7 ms a frame at 800 x 800, most of it
deformation). The viewer's Time slider, ``ds4d-render``, ``ns-render`` and ``ds4d-eval`` render
the same few times over and over with fixed parameters, so the geometry of a time can be kept.

Modes (:data:`PlaybackMode`):

* ``"off"``: no cache; every render deforms.
* ``"exact"``: geometry cached per exact time (the most recent :data:`EXACT_CACHE_ENTRIES` times);
  every render equals a direct render, but each new time (a slider drag) still deforms once.
* ``"frames"``: the geometry of every frame time of the clip is cached; a frame time renders the
  cached geometry (the same image as a direct render) and a time between two frames renders the
  interpolation of the two neighbouring frames' geometry (:func:`interpolate_geometry`). That is
  not the deformation evaluated at that time, but the field is only ever fitted at frame times, so
  between them either is an interpolation; this one makes any time cost a blend, not a deformation.
  Times outside the first..last frame, or a model that does not know its frame count, fall back to
  ``"exact"`` caching.

The cache is keyed by the state of the model's parameters and buffers (storage, version counter,
shape of each): any in-place change (optimiser step, ``load_state_dict``), replacement
(densification) or device move empties it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable, Iterable, List, Literal, Optional, Sequence, Set, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from ds4d_ns.fields.deformation import DeformedGaussians

PlaybackMode = Literal["off", "frames", "exact"]

EXACT_CACHE_ENTRIES = 64
"""Times kept by exact caching (oldest dropped first): a slider drag must not grow memory without bound."""

FRAME_TIME_TOLERANCE = 1e-6
"""A render time this close to a frame time uses that frame's geometry (camera times are float32)."""


def parameter_state(tensors: Iterable[Tensor]) -> Tuple[Tuple[int, int, Tuple[int, ...]], ...]:
    """Fingerprint of tensors that changes whenever one is written in place, replaced, resized or moved.

    ``Tensor._version`` counts in-place writes (optimiser steps, ``copy_`` in ``load_state_dict``);
    ``data_ptr`` and the shape catch new tensors (densification, ``.to(device)``).
    """
    return tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in tensors)


def normalised_lerp(q0: Float[Tensor, "n 4"], q1: Float[Tensor, "n 4"], weight: float) -> Float[Tensor, "n 4"]:
    """Normalised linear interpolation of quaternions ``[N, 4]``, along the shorter arc.

    nlerp rather than slerp: between neighbouring frames the rotations differ by small angles, where
    nlerp and slerp agree to second order, and nlerp has no division by ``sin`` of a near-zero angle.
    """
    q0 = torch.nn.functional.normalize(q0, dim=-1)
    q1 = torch.nn.functional.normalize(q1, dim=-1)
    # q and -q are the same rotation: flip q1 into q0's hemisphere so the blend takes the short way
    sign = torch.where((q0 * q1).sum(dim=-1, keepdim=True) < 0, -1.0, 1.0)
    return torch.nn.functional.normalize(torch.lerp(q0, sign * q1, weight), dim=-1)


def interpolate_geometry(a: DeformedGaussians, b: DeformedGaussians, weight: float) -> DeformedGaussians:
    """Geometry ``weight`` of the way from ``a`` (0) to ``b`` (1): linear in means and log-scales,
    :func:`normalised_lerp` in rotations (returned normalised)."""
    return DeformedGaussians(
        means=torch.lerp(a.means, b.means, weight),
        quats=normalised_lerp(a.quats, b.quats, weight),
        scales=torch.lerp(a.scales, b.scales, weight),
    )


def bracketing_frames(time: float, frame_times: Sequence[float]) -> Optional[Tuple[int, int, float]]:
    """Frames ``(i, j, weight)`` with ``time`` between them (``i == j`` on a frame time), or None outside.

    ``frame_times`` must be increasing.
    """
    if not frame_times or time < frame_times[0] - FRAME_TIME_TOLERANCE or time > frame_times[-1] + FRAME_TIME_TOLERANCE:
        return None
    for i, frame in enumerate(frame_times):
        if abs(time - frame) <= FRAME_TIME_TOLERANCE:
            return i, i, 0.0
        if frame > time:
            previous = frame_times[i - 1]
            return i - 1, i, (time - previous) / (frame - previous)
    return None  # unreachable: time is within the last frame's tolerance


class PlaybackCache:
    """Deformed geometry per time for one model; see the module docstring for the modes."""

    def __init__(self) -> None:
        self._state: Optional[Hashable] = None
        self._entries: "OrderedDict[float, DeformedGaussians]" = OrderedDict()
        self._frame_keys: Set[float] = set()

    def clear(self) -> None:
        """Forget every cached geometry."""
        self._state = None
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _cached(self, time: float, deform: Callable[[float], DeformedGaussians], bounded: bool) -> DeformedGaussians:
        if time in self._entries:
            self._entries.move_to_end(time)
            return self._entries[time]
        with torch.no_grad():
            geometry = deform(time)
        geometry = DeformedGaussians(geometry.means.detach(), geometry.quats.detach(), geometry.scales.detach())
        self._entries[time] = geometry
        if bounded:
            # frame entries are never evicted: only exact-time entries beyond the bound go
            exact_times: List[float] = [t for t in self._entries if t not in self._frame_keys]
            while len(exact_times) > EXACT_CACHE_ENTRIES:
                del self._entries[exact_times.pop(0)]
        return geometry

    def geometry(
        self,
        time: float,
        mode: PlaybackMode,
        frame_times: Optional[Sequence[float]],
        state: Hashable,
        deform: Callable[[float], DeformedGaussians],
    ) -> DeformedGaussians:
        """Geometry at ``time``: from the cache, an interpolation of cached frames, or ``deform(time)``.

        Args:
            time: render time.
            mode: ``"off"``, ``"exact"`` or ``"frames"``.
            frame_times: the clip's increasing frame times (None when unknown: exact caching).
            state: fingerprint of the parameters (:func:`parameter_state`); a new one empties the cache.
            deform: the deformation, called at most once per cached time.
        """
        if mode == "off":
            return deform(time)
        if state != self._state:
            self.clear()
            self._state = state
        self._frame_keys = set(frame_times or ())
        bracket = bracketing_frames(time, frame_times) if mode == "frames" and frame_times else None
        if bracket is None or not frame_times:  # (no bracket without frame times: this only tells the type checker)
            return self._cached(time, deform, bounded=True)
        i, j, weight = bracket
        first = self._cached(float(frame_times[i]), deform, bounded=False)
        if i == j:
            return first
        return interpolate_geometry(first, self._cached(float(frame_times[j]), deform, bounded=False), weight)
