"""Builds activation ops from XLA-compiled forward/backward bodies with `tf.custom_gradient`."""

from __future__ import annotations

from typing import Callable, Sequence

from keras_activations._backend import tf


def elementwise(x: tf.Tensor, forward: Callable, backward: Callable, consts: Sequence[tf.Tensor],
                save: str = "output") -> tf.Tensor:
    """Applies `y = forward(x, *consts)` with gradient `backward(saved, dy, *consts)`.

    `saved` is the output `y` (`save="output"`, the default: the next layer keeps `y` alive anyway, so
    the backward pass costs no extra activation-sized tensor) or the input `x` (`save="input"`).
    `consts` are tensors of `x`'s dtype that get no gradient.
    """

    @tf.custom_gradient
    def op(inputs):
        outputs = forward(inputs, *consts)
        saved = outputs if save == "output" else inputs

        def grad(upstream):
            return backward(saved, upstream, *consts)

        return outputs, grad

    return op(x)


def parametric(x: tf.Tensor, params: Sequence[tf.Tensor], forward: Callable, backward: Callable,
               consts: Sequence[tf.Tensor] = (), save: str = "input") -> tf.Tensor:
    """Like `elementwise`, for activations with learned tensor parameters broadcastable to `x`.

    The parameters are explicit inputs of the custom gradient (never captured variables, which
    break under mixed precision), and `backward(saved, dy, *params, *consts)` returns the gradient of
    `x` and one gradient per parameter, already summed down to the parameter's shape (inside the
    compiled body, with `unbroadcast`, so that XLA fuses the reduction into the elementwise pass).
    """

    @tf.custom_gradient
    def op(inputs, *values):
        outputs = forward(inputs, *values, *consts)
        saved = outputs if save == "output" else inputs

        def grad(upstream):
            return tuple(backward(saved, upstream, *values, *consts))

        return outputs, grad

    return op(x, *params)
