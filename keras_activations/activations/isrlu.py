"""The inverse square root linear unit (ISRLU)."""

from __future__ import annotations

from keras_activations._backend import as_float_tensor, compiled, tf
from keras_activations.activations import _ops
from keras_activations.activations.registry import register
from keras_activations.spec import ActivationSpec, check_real


def _forward(x, alpha):
    # x / sqrt(1 + alpha*x^2); for x < -1 written as -1/sqrt(1/x^2 + alpha) so that x^2 cannot
    # overflow (x = -1e20 in float32, x = -1e4 in float16) and x = -inf gives -1/sqrt(alpha).
    small = x * tf.math.rsqrt(1 + alpha * tf.square(x))
    large = -tf.math.rsqrt(tf.math.reciprocal(tf.square(x)) + alpha)
    return tf.where(x >= 0, x, tf.where((x < -1) & (alpha > 0), large, small))


def _derivative(x, alpha):
    # (1 + alpha*x^2)^(-3/2), written as (|x|^-1 / sqrt(x^-2 + alpha))^3 for x < -1.
    small = tf.math.rsqrt(1 + alpha * tf.square(x))
    large = tf.math.reciprocal(-x) * tf.math.rsqrt(tf.math.reciprocal(tf.square(x)) + alpha)
    root = tf.where((x < -1) & (alpha > 0), large, small)
    return tf.where(x >= 0, tf.ones_like(x), root * root * root)


def _derivative_from_output(y, alpha):
    # For x < 0: y^2 = x^2/(1 + alpha*x^2), so 1 + alpha*x^2 = 1/(1 - alpha*y^2) and
    # f'(x) = (1 - alpha*y^2)^(3/2). Clamped at 0 against rounding near saturation.
    base = tf.maximum(1 - alpha * tf.square(y), 0)
    return tf.where(y < 0, base * tf.sqrt(base), tf.ones_like(y))


_FORWARD = compiled(_forward)
_BACKWARD = compiled(lambda y, dy, alpha: dy * _derivative_from_output(y, alpha))


def isrlu(x, alpha: float = 1.0):
    """Inverse square root linear unit (Carlile et al. 2017, arXiv:1710.09967).

    Formula: `f(x) = x if x >= 0 else x / sqrt(1 + alpha * x^2)`; it saturates to `-1/sqrt(alpha)`
    like ELU but needs no exponential. Derivative: `1 if x >= 0 else (1 + alpha*x^2)^(-3/2)`,
    continuous at 0, computed in the backward pass from the output as `(1 - alpha*y^2)^(3/2)`.

    Args:
        x: float tensor.
        alpha: `>= 0`; 0 gives the identity. Default 1.0.

    Returns:
        A tensor of `x`'s shape and dtype.

    Example:

    >>> layer = keras.layers.Dense(64, activation=keras_activations.isrlu)
    """
    alpha = check_real(alpha, "isrlu", "alpha", minimum=0.0)
    x = as_float_tensor(x, "isrlu")
    return _ops.elementwise(x, _FORWARD, _BACKWARD, [tf.constant(alpha, x.dtype)], save="output")


def _public_derivative(x, alpha=1.0):
    x = as_float_tensor(x, "isrlu")
    return _derivative(x, tf.constant(alpha, x.dtype))


register(ActivationSpec(
    name="isrlu", function=isrlu,
    formula="x if x >= 0 else x / sqrt(1 + alpha * x^2)",
    derivative_formula="1 if x >= 0 else (1 + alpha * x^2)^(-3/2)",
    parameters="alpha=1.0 (>= 0)",
    derivative=_public_derivative,
    grad_at_zero=None, builtin="(none)", layer="ISRLU", can_die=False, saturates=True, saves="output",
    reference="Carlile et al. 2017, arXiv:1710.09967",
))
