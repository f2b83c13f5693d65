"""`ParameterShape`: the shape of per-feature learned activation parameters with `shared_axes`."""

from __future__ import annotations

import numbers
from typing import List, Optional, Sequence, Union

import keras


class ParameterShape:
    """Computes a learned parameter's shape from the input shape, Keras PReLU style.

    `shared_axes` are 1-based (axis 0 is the batch) or negative; along them the parameter has size 1
    and the input's size may be unknown. Every other non-batch axis must have a known size.
    """

    def __init__(self, layer: str, shared_axes: Optional[Union[int, Sequence[int]]]):
        self.layer = layer
        if shared_axes is None:
            axes: List[int] = []
        elif isinstance(shared_axes, numbers.Integral):
            axes = [int(shared_axes)]
        else:
            axes = [int(a) for a in shared_axes]
        if any(a == 0 for a in axes):
            raise ValueError(
                f"{layer}: argument `shared_axes` must not contain 0 (the batch axis), got {shared_axes!r}; "
                "use 1-based axes such as [1, 2] for the spatial axes of a channels_last Conv2D."
            )
        self.shared_axes = axes or None

    def initializer(self, value):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return keras.initializers.Constant(float(value))
        return keras.initializers.get(value)

    def _shared(self, rank: int) -> List[int]:
        shared = []
        for axis in self.shared_axes or []:
            normalized = axis + rank if axis < 0 else axis
            if not 1 <= normalized < rank:
                raise ValueError(
                    f"{self.layer}: argument `shared_axes` contains {axis}, out of range for inputs of "
                    f"rank {rank}; valid axes are 1..{rank - 1} or -{rank - 1}..-1."
                )
            shared.append(normalized)
        return shared

    def build(self, input_shape) -> List[int]:
        rank = len(input_shape)
        shared = self._shared(rank)
        shape = []
        for axis in range(1, rank):
            if axis in shared:
                shape.append(1)
            elif input_shape[axis] is None:
                raise ValueError(
                    f"{self.layer}: axis {axis} of the input shape {tuple(input_shape)} is unknown; "
                    f"either give it a size or share the parameter along it with `shared_axes`."
                )
            else:
                shape.append(int(input_shape[axis]))
        return shape

    def input_spec(self, input_shape) -> keras.layers.InputSpec:
        rank = len(input_shape)
        shared = self._shared(rank)
        axes = {a: input_shape[a] for a in range(1, rank) if a not in shared}
        return keras.layers.InputSpec(ndim=rank, axes=axes)
