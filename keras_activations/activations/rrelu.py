"""Randomized leaky ReLU (RReLU)."""

from __future__ import annotations

import keras

from keras_activations._backend import as_float_tensor, compiled, tf
from keras_activations.activations import _ops
from keras_activations.activations.rectifiers import _derivative, _forward, _leaky
from keras_activations.activations.registry import register
from keras_activations.spec import ActivationSpec, GradAtZero, check_real, resolve_grad_at_zero


def check_bounds(lower, upper, name: str = "rrelu"):
    """Validates RReLU's slope bounds, `0 <= lower <= upper`, and returns them as floats."""
    lower = check_real(lower, name, "lower", minimum=0.0)
    upper = check_real(upper, name, "upper", minimum=0.0)
    if lower > upper:
        raise ValueError(
            f"{name}: argument `lower` must be <= `upper` (slopes are drawn from U(lower, upper)), "
            f"got lower={lower!r} > upper={upper!r}."
        )
    return lower, upper


def _sampled_forward(x, slope, at_zero):
    # Returns the output and the derivative, which is all the backward pass needs.
    return _forward(x, slope), _derivative(x, slope, at_zero)


_SAMPLED_FORWARD = compiled(_sampled_forward)


def rrelu(x, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False, seed=None,
          grad_at_zero: GradAtZero = "left"):
    """Randomized leaky ReLU (Xu et al. 2015, arXiv:1505.00853).

    Formula: `f(x) = x if x > 0 else slope * x`, where in training `slope` is drawn per element from
    `U(lower, upper)` and in inference it is fixed to `(lower + upper) / 2`. Derivative:
    `1 if x > 0 else slope` (the slope that was drawn).

    Args:
        x: float tensor.
        lower: lower bound of the slope, `>= 0`. Default 1/8 (as `torch.nn.RReLU`).
        upper: upper bound of the slope, `>= lower`. Default 1/3.
        training: draw random slopes (True) or use the mean slope (False, the default).
        seed: None, an int (the same slopes at every call) or a `keras.random.SeedGenerator`
            (new slopes at every call, reproducible).
        grad_at_zero: derivative at exactly `x == 0`: `"left"` (the slope, the default, as
            `torch.nn.functional.rrelu`), `"right"` (1) or a number.

    Returns:
        A tensor of `x`'s shape and dtype.

    Example:

    >>> y = keras_activations.rrelu(x, training=True, seed=keras.random.SeedGenerator(1))
    """
    lower, upper = check_bounds(lower, upper)
    x = as_float_tensor(x, "rrelu")
    if not training:
        return _leaky(x, (lower + upper) / 2, grad_at_zero, "rrelu")
    slope = keras.random.uniform(tf.shape(x), lower, upper, dtype=x.dtype, seed=seed)
    at_zero = tf.cast(resolve_grad_at_zero(grad_at_zero, "rrelu", left=slope, right=1.0), x.dtype)

    @tf.custom_gradient
    def op(inputs):
        outputs, derivative = _SAMPLED_FORWARD(inputs, slope, at_zero)
        return outputs, lambda upstream: upstream * derivative

    return op(x)


def _public_derivative(x, lower=1.0 / 8, upper=1.0 / 3, grad_at_zero="left"):
    x = as_float_tensor(x, "rrelu")
    slope = (lower + upper) / 2
    at_zero = resolve_grad_at_zero(grad_at_zero, "rrelu", left=slope, right=1.0)
    return _derivative(x, tf.constant(slope, x.dtype), tf.constant(at_zero, x.dtype))


register(ActivationSpec(
    name="rrelu", function=rrelu,
    formula="x if x > 0 else slope * x; slope ~ U(lower, upper) in training, (lower + upper) / 2 otherwise",
    derivative_formula="1 if x > 0 else slope",
    parameters="lower=1/8, upper=1/3 (0 <= lower <= upper)",
    derivative=_public_derivative,
    grad_at_zero="left", builtin="torch.nn.functional.rrelu", layer="RReLU", can_die=False, saturates=False,
    saves="the derivative (training), as leaky_relu otherwise", reference="Xu et al. 2015, arXiv:1505.00853",
))
