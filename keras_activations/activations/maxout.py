"""Maxout: the maximum over groups of consecutive features."""

from __future__ import annotations

import numbers

from keras_activations._backend import as_float_tensor, tf
from keras_activations.activations.registry import register
from keras_activations.spec import ActivationSpec


def _grouped(x: tf.Tensor, num_units, axis: int, name: str = "maxout"):
    """Reshapes `x` so that `axis` becomes `(num_units, k)`; returns the grouped tensor, axis and k."""
    if isinstance(num_units, bool) or not isinstance(num_units, numbers.Integral) or num_units < 1:
        raise ValueError(f"{name}: argument `num_units` must be a positive integer, got {num_units!r}.")
    rank = x.shape.rank
    if rank is None:
        raise ValueError(f"{name}: the input's rank must be known, got shape {x.shape}.")
    if not -rank <= axis < rank:
        raise ValueError(f"{name}: argument `axis`={axis} is out of range for an input of rank {rank}.")
    axis = axis % rank
    size = x.shape[axis]
    if size is None:
        raise ValueError(
            f"{name}: the size of axis {axis} must be known to split it into {num_units} units, "
            f"got input shape {x.shape}."
        )
    if size % num_units:
        raise ValueError(
            f"{name}: the size of axis {axis} ({size}) must be divisible by `num_units`={num_units}; "
            f"valid values of num_units divide {size}."
        )
    pieces = size // num_units
    dynamic = tf.shape(x)
    dims = [x.shape[i] if x.shape[i] is not None else dynamic[i] for i in range(rank)]
    grouped = tf.reshape(x, dims[:axis] + [num_units, pieces] + dims[axis + 1:])
    return grouped, axis, pieces


def _winner(grouped: tf.Tensor, group_axis: int, pieces: int) -> tf.Tensor:
    # The first index holding the maximum: tf.argmax leaves ties unspecified.
    maximum = tf.reduce_max(grouped, axis=group_axis, keepdims=True)
    index_shape = [1] * grouped.shape.rank
    index_shape[group_axis] = pieces
    index = tf.reshape(tf.range(pieces, dtype=tf.int32), index_shape)
    candidates = tf.where(tf.equal(grouped, maximum), index, pieces)
    return tf.reduce_min(candidates, axis=group_axis)


def maxout_winner(x, num_units: int, axis: int = -1) -> tf.Tensor:
    """Index (int32, in `[0, k)`) of the piece that wins each maxout unit (ties: the first).

    Returns `k` for a group with a NaN (no piece wins; its gradient is 0).
    """
    x = as_float_tensor(x, "maxout")
    grouped, axis, pieces = _grouped(x, num_units, axis)
    return _winner(grouped, axis + 1, pieces)


def maxout(x, num_units: int, axis: int = -1):
    """Maxout (Goodfellow et al. 2013, arXiv:1302.4389).

    Formula: `f(x)_i = max_{j in G(i)} x_j`: `axis` (of size `n`) is split into `num_units` groups of
    `k = n / num_units` consecutive features, and each unit outputs the maximum of its group. The
    gradient goes to the arg-max only (ties: the first piece gets all of it). A maxout unit with `k`
    pieces learns a piecewise-linear convex function with up to `k` pieces.

    Args:
        x: float tensor whose size along `axis` is known and divisible by `num_units`.
        num_units: number of output features along `axis`.
        axis: the feature axis. Default -1 (channels_last; use 1 for channels_first).

    Returns:
        A tensor of `x`'s shape with `axis` of size `num_units` (static even with unknown batch size).

    Example:

    >>> keras_activations.maxout(tf.constant([[1.0, 3.0, -2.0, -1.0]]), num_units=2)
    <tf.Tensor: ... numpy=array([[ 3., -1.]], dtype=float32)>
    """
    x = as_float_tensor(x, "maxout")
    _, axis, pieces = _grouped(x, num_units, axis)  # validates before tracing the op
    group_axis = axis + 1

    @tf.custom_gradient
    def op(inputs):
        grouped = _grouped(inputs, num_units, axis)[0]
        winner = _winner(grouped, group_axis, pieces)
        outputs = tf.reduce_max(grouped, axis=group_axis)

        def grad(upstream):
            mask = tf.one_hot(winner, pieces, axis=group_axis, dtype=upstream.dtype)
            return tf.reshape(mask * tf.expand_dims(upstream, group_axis), tf.shape(inputs))

        return outputs, grad

    return op(x)


def _public_derivative(x, num_units, axis=-1):
    """d(maxout)/dx elementwise: 1 where the input element is its unit's (first) arg-max, else 0."""
    x = as_float_tensor(x, "maxout")
    grouped, axis, pieces = _grouped(x, num_units, axis)
    mask = tf.one_hot(_winner(grouped, axis + 1, pieces), pieces, axis=axis + 1, dtype=x.dtype)
    return tf.reshape(mask, tf.shape(x))


register(ActivationSpec(
    name="maxout", function=maxout,
    formula="max over each group of k = n / num_units consecutive features",
    derivative_formula="1 for the group's (first) arg-max, else 0",
    parameters="num_units (divides the axis size), axis=-1",
    derivative=_public_derivative,
    grad_at_zero=None, builtin="tfa.layers.Maxout", layer="Maxout", can_die=True, saturates=False,
    saves="the arg-max indices", reference="Goodfellow et al. 2013, arXiv:1302.4389", elementwise=False,
))
