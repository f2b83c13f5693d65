"""The Maxout layer."""

from __future__ import annotations

import numbers

import keras

from keras_activations.activations.maxout import maxout, maxout_winner

_register = keras.saving.register_keras_serializable(package="keras_activations")


@_register
class Maxout(keras.layers.Layer):
    """Maxout layer: the maximum over groups of `k = n / num_units` consecutive features.

    Put it after a Dense or Conv layer with `num_units * k` outputs to get `num_units` maxout units of
    `k` pieces each. The gradient goes to each group's (first) arg-max only.

    Args:
        num_units: number of output features; must divide the input's size along `axis`.
        axis: feature axis. Default -1 (channels_last); use 1 after a channels_first convolution.
        **kwargs: base layer arguments.

    Example:

    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4 * 3),
    ...                           keras_activations.Maxout(num_units=4)])   # 4 units of 3 pieces
    """

    def __init__(self, num_units: int, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_units, bool) or not isinstance(num_units, numbers.Integral) or num_units < 1:
            raise ValueError(f"Maxout: argument `num_units` must be a positive integer, got {num_units!r}.")
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise ValueError(f"Maxout: argument `axis` must be an integer, got {axis!r}.")
        self.num_units = int(num_units)
        self.axis = int(axis)
        self.supports_masking = True
        self.pieces = None

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"Maxout: argument `axis`={self.axis} is out of range for inputs of shape {tuple(input_shape)}."
            )
        size = input_shape[self.axis]
        if size is None or size % self.num_units:
            raise ValueError(
                f"Maxout: the input size along axis {self.axis} ({size}) must be known and divisible by "
                f"`num_units`={self.num_units}; give the preceding layer num_units * k outputs."
            )
        self.pieces = size // self.num_units
        self.input_spec = keras.layers.InputSpec(ndim=rank, axes={self.axis: size})

    def call(self, inputs):
        return maxout(inputs, self.num_units, self.axis)

    def winning_piece(self, inputs):
        """Index (int32, in `[0, k)`) of the winning piece of each output unit (ties: the first)."""
        return maxout_winner(keras.ops.convert_to_tensor(inputs, dtype=self.compute_dtype),
                             self.num_units, self.axis)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        shape[self.axis] = self.num_units
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "num_units": self.num_units, "axis": self.axis}
