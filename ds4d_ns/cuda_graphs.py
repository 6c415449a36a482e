"""CUDA graphs for functions of tensors: captured once per input layout, replayed as one launch.

Much of this project's GPU work is many small kernels whose launches cost the host more than the GPU
spends running them (a training step, the SDS networks). ``GraphedFunction`` replays a differentiable
function's forward and backward as two CUDA graphs (``torch.cuda.make_graphed_callables``);
``GraphedInference`` replays a gradient-free one (``torch.cuda.CUDAGraph``). Both capture again when the
inputs' shapes or dtypes change, run eagerly off CUDA or when disabled (or, with a logged warning, once a
capture has failed), and return outputs that live in the graph's own memory: valid until the next
call of the same object.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple, cast

import torch
from torch import Tensor, nn

TensorFunction = Callable[..., Tuple[Tensor, ...]]


class _Capturable(nn.Module):
    """``function`` as a module whose parameters are ``owner``'s: ``make_graphed_callables`` returns the
    gradients of a module's parameters, and replaces the forward of the module it is given (this
    wrapper, made anew at each capture, never the owner)."""

    def __init__(self, function: TensorFunction, owner: Optional[nn.Module]) -> None:
        super().__init__()
        self.function = function
        self.owner = owner

    def forward(self, *args: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.function(*args))


class GraphedFunction:
    """``function(*tensors) -> tuple of tensors`` replayed as CUDA graphs where it can be.

    Captured on first use and again whenever the inputs' shapes, dtypes or ``requires_grad`` change, or
    ``owner``'s parameters are replaced (a checkpoint load); the previous capture is dropped first, so its
    memory is reused. Runs eagerly when disabled, off CUDA, or without gradients (a graph's backward
    must have a forward to follow).

    Args:
        function: pure in its tensor arguments and ``owner``'s parameters; returns a tuple of tensors.
        owner: the module whose parameters ``function`` reads (their gradients come back from the graph).
        enabled: False always runs ``function`` eagerly.
    """

    def __init__(self, function: TensorFunction, owner: Optional[nn.Module] = None, enabled: bool = True) -> None:
        self.function = function
        self.owner = owner
        self.enabled = enabled
        self.captures = 0
        """How many times the function was captured (a capture costs a few eager calls and a synchronisation)."""
        self._graphed: Optional[Callable[..., Tuple[Tensor, ...]]] = None
        self._key: Optional[tuple] = None

    def _graphable(self, args: Tuple[Tensor, ...]) -> bool:
        """Whether this call can replay graphs: enabled, on CUDA, with gradients on."""
        return self.enabled and bool(args) and args[0].is_cuda and torch.is_grad_enabled()

    def __call__(self, *args: Tensor) -> Tuple[Tensor, ...]:
        if not self._graphable(args):
            return tuple(self.function(*args))
        parameters = () if self.owner is None else tuple(id(p) for p in self.owner.parameters())
        key = (tuple((a.shape, a.dtype, a.requires_grad) for a in args), parameters)
        if key != self._key or self._graphed is None:
            self._graphed, self._key = None, None  # release the old graphs' memory before capturing again
            samples = tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in args)
            capturable = _Capturable(self.function, self.owner)
            try:
                graphed = torch.cuda.make_graphed_callables(capturable, samples, allow_unused_input=True)
            except RuntimeError as err:  # something in the function cannot be captured: stay correct, eagerly
                self.enabled = False
                _say_eager(self.function, err)
                return tuple(self.function(*args))
            self._graphed, self._key = cast(Callable[..., Tuple[Tensor, ...]], graphed), key
            self.captures += 1
        assert self._graphed is not None
        return self._graphed(*args)


class GraphedInference:
    """``function(*tensors) -> tuple of tensors`` without gradients, replayed as one CUDA graph.

    For frozen networks called with the same shapes at every step (the SDS UNet): captured on first use
    and again when the inputs' shapes or dtypes change. Off CUDA or when disabled it runs eagerly (under
    ``torch.no_grad`` either way). Random draws inside ``function`` are not allowed: keep them outside.
    """

    def __init__(self, function: TensorFunction, enabled: bool = True) -> None:
        self.function = function
        self.enabled = enabled
        self.captures = 0
        """How many times the function was captured."""
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._key: Optional[tuple] = None
        self._inputs: List[Tensor] = []
        self._outputs: Tuple[Tensor, ...] = ()

    def _graphable(self, args: Tuple[Tensor, ...]) -> bool:
        """Whether this call can replay the graph: enabled and on CUDA."""
        return self.enabled and bool(args) and args[0].is_cuda

    @torch.no_grad()
    def __call__(self, *args: Tensor) -> Tuple[Tensor, ...]:
        if not self._graphable(args):
            return tuple(self.function(*args))
        key = tuple((a.shape, a.dtype) for a in args)
        if key != self._key or self._graph is None:
            try:
                self._capture(args, key)
            except RuntimeError as err:
                self.enabled, self._graph, self._outputs = False, None, ()
                _say_eager(self.function, err)
                return tuple(self.function(*args))
        for static, value in zip(self._inputs, args):
            static.copy_(value)
        assert self._graph is not None
        self._graph.replay()
        return self._outputs

    def _capture(self, args: Tuple[Tensor, ...], key: tuple) -> None:
        self._graph, self._key, self._outputs = None, None, ()  # the old graph's memory first
        self._inputs = [a.detach().clone() for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the main stream, as capture requires (cuBLAS workspaces, ...)
            for _ in range(2):
                self.function(*self._inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._outputs = tuple(self.function(*self._inputs))
        self._graph, self._key = graph, key
        self.captures += 1


def _say_eager(function: Callable, err: Exception) -> None:
    """Log, once per function, that its capture failed and it now runs eagerly."""
    from nerfstudio.utils.rich_utils import CONSOLE
    from rich.markup import escape

    name = getattr(function, "__qualname__", repr(function))
    first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
    CONSOLE.log(
        f"[yellow]CUDA graph capture of {escape(name)} failed ({escape(first_line)}): it runs eagerly from now on "
        "(same results, slower; --pipeline.model.cuda-graphs False skips the graphs)"
    )
