"""Generalized rectifiers `max(0, x) + slope * min(0, x)`: leaky ReLU, absolute value, PReLU."""

from __future__ import annotations

from keras_activations._backend import as_float_tensor, compiled, param_tensor, tf, unbroadcast
from keras_activations.activations import _ops
from keras_activations.activations.registry import register
from keras_activations.spec import ActivationSpec, GradAtZero, check_real, resolve_grad_at_zero


def _forward(x, slope, at_zero=None):  # noqa: ARG001 - shares the consts of the backward
    # multiply_no_nan: a zero slope gives 0 at x = -inf (like tf.nn.relu), not 0 * -inf = NaN;
    # NaN inputs fail both comparisons and pass through unchanged.
    return tf.where(x >= 0, x, tf.where(x < 0, tf.math.multiply_no_nan(x, slope), x))


def _derivative(x, slope, at_zero):
    # Also valid on the output y when slope > 0: y has x's sign, and y == 0 exactly when x == 0.
    return tf.where(x > 0, tf.ones_like(x), tf.where(x < 0, slope, at_zero))


_FORWARD = compiled(_forward)
_BACKWARD = compiled(lambda saved, dy, slope, at_zero: dy * _derivative(saved, slope, at_zero))


def _leaky(x, slope: float, grad_at_zero: GradAtZero, name: str):
    """The rectifier with a fixed slope, shared by leaky_relu, abs_rectifier and inference-mode rrelu."""
    at_zero = resolve_grad_at_zero(grad_at_zero, name, left=slope, right=1.0)
    consts = [tf.constant(slope, x.dtype), tf.constant(at_zero, x.dtype)]
    # The output carries the input's sign only for a positive slope; with slope 0 the output is 0 on
    # the whole negative half-line, which is fine only while f'(0) is the left derivative, 0.
    from_output = slope > 0 or (slope == 0 and at_zero == 0)
    backward = _BACKWARD
    # TensorFlow's fused kernels compute the same derivative, the left one at 0, and write into a
    # dead input's buffer (see elu.py). LeakyReluGrad holds its slope as a float32 attribute, too
    # coarse for float64.
    if slope == 0 and at_zero == 0:
        backward = _relu_grad
    elif at_zero == slope and from_output and x.dtype != tf.float64:
        backward = _leaky_relu_grad(slope)
    return _ops.elementwise(x, _FORWARD, backward, consts, save="output" if from_output else "input")


def _relu_grad(saved, dy, *consts):
    return tf.raw_ops.ReluGrad(gradients=dy, features=saved)


def _leaky_relu_grad(slope):
    def backward(saved, dy, *consts):
        return tf.raw_ops.LeakyReluGrad(gradients=dy, features=saved, alpha=slope)

    return backward


def leaky_relu(x, negative_slope: float = 0.01, grad_at_zero: GradAtZero = "left"):
    """Generalized rectifier: `f(x) = max(0, x) + negative_slope * min(0, x)`.

    `negative_slope=0` is ReLU, `0.01` (the default) the leaky ReLU of Maas et al. 2013, `-1` the
    absolute value; any real slope is allowed. Derivative: `1 if x > 0 else negative_slope`.

    Args:
        x: float tensor.
        negative_slope: slope for `x < 0`. Default 0.01.
        grad_at_zero: derivative at exactly `x == 0`: `"left"` (negative_slope, the default, as
            `tf.nn.leaky_relu`; with slope 0 also `tf.nn.relu`'s 0), `"right"` (1) or a number.

    Returns:
        A tensor of `x`'s shape and dtype.

    Example:

    >>> keras_activations.leaky_relu(tf.constant([-2.0, 3.0]), negative_slope=0.1)
    <tf.Tensor: ... numpy=array([-0.2, 3.], dtype=float32)>
    """
    slope = check_real(negative_slope, "leaky_relu", "negative_slope")
    return _leaky(as_float_tensor(x, "leaky_relu"), slope, grad_at_zero, "leaky_relu")


def abs_rectifier(x, grad_at_zero: GradAtZero = 0.0):
    """Absolute value rectification, `f(x) = |x|` (Jarrett et al. 2009).

    The generalized rectifier with slope -1: invariant to a polarity reversal of its input.
    Derivative: `sign(x)`, `1 if x > 0 else -1`.

    Args:
        x: float tensor.
        grad_at_zero: derivative at exactly `x == 0`: `"left"` (-1), `"right"` (1) or a number;
            default 0.0, as `tf.abs`.

    Returns:
        A tensor of `x`'s shape and dtype.

    Example:

    >>> keras_activations.abs_rectifier(tf.constant([-2.0, 3.0]))
    <tf.Tensor: ... numpy=array([2., 3.], dtype=float32)>
    """
    return _leaky(as_float_tensor(x, "abs_rectifier"), -1.0, grad_at_zero, "abs_rectifier")


def _prelu_backward(x, dy, alpha, at_zero):
    dx = dy * _derivative(x, alpha, at_zero)
    dalpha = dy * tf.minimum(x, tf.zeros_like(x))
    return dx, unbroadcast(dalpha, tf.shape(alpha), alpha.dtype)


_PRELU_BACKWARD = compiled(_prelu_backward)
_PRELU_FORWARD = compiled(lambda x, alpha, at_zero: _forward(x, alpha))


def prelu(x, alpha, grad_at_zero: GradAtZero = 0.0):
    """Parametric ReLU (He et al. 2015, arXiv:1502.01852): `max(0, x) + alpha * min(0, x)`.

    `alpha` is a tensor broadcastable to `x` (learned in the `PReLU` layer) and receives the gradient
    `min(0, x)`, summed over the broadcast axes. Derivative in x: `1 if x > 0 else alpha`.

    Args:
        x: float tensor.
        alpha: the negative slope(s), a tensor broadcastable to `x`.
        grad_at_zero: derivative at exactly `x == 0`: `"left"` (alpha), `"right"` (1) or a number;
            default 0.0, as `keras.layers.PReLU` (built from two ReLUs, whose gradients are 0 at 0).

    Returns:
        A tensor of `x`'s shape and dtype.

    Example:

    >>> keras_activations.prelu(tf.constant([[-2.0, 3.0]]), alpha=tf.constant([0.25, 0.1]))
    <tf.Tensor: ... numpy=array([[-0.5, 3.]], dtype=float32)>
    """
    x = as_float_tensor(x, "prelu")
    alpha = param_tensor(alpha, x.dtype, "prelu", "alpha")
    at_zero = tf.cast(
        resolve_grad_at_zero(grad_at_zero, "prelu", left=alpha, right=1.0), x.dtype
    )
    return _ops.parametric(x, (alpha,), _PRELU_FORWARD, _PRELU_BACKWARD, consts=(at_zero,), save="input")


def _leaky_derivative(x, negative_slope=0.01, grad_at_zero="left"):
    x = as_float_tensor(x, "leaky_relu")
    at_zero = resolve_grad_at_zero(grad_at_zero, "leaky_relu", left=negative_slope, right=1.0)
    return _derivative(x, tf.constant(negative_slope, x.dtype), tf.constant(at_zero, x.dtype))


def _abs_derivative(x, grad_at_zero=0.0):
    return _leaky_derivative(x, -1.0, grad_at_zero)


def _prelu_derivative(x, alpha, grad_at_zero=0.0):
    x = as_float_tensor(x, "prelu")
    alpha = param_tensor(alpha, x.dtype, "prelu", "alpha")
    at_zero = tf.cast(resolve_grad_at_zero(grad_at_zero, "prelu", left=alpha, right=1.0), x.dtype)
    return _derivative(x, alpha, at_zero)


register(ActivationSpec(
    name="leaky_relu", function=leaky_relu,
    formula="max(0, x) + negative_slope * min(0, x)",
    derivative_formula="1 if x > 0 else negative_slope",
    parameters="negative_slope=0.01 (any real; 0 = ReLU, -1 = |x|)",
    derivative=_leaky_derivative,
    grad_at_zero="left", builtin="tf.nn.leaky_relu", layer="LeakyReLU", can_die=False, saturates=False,
    saves="output (slope > 0), else input", reference="Maas et al. 2013",
))
register(ActivationSpec(
    name="abs_rectifier", function=abs_rectifier,
    formula="|x|  (= max(0, x) - min(0, x))",
    derivative_formula="1 if x > 0 else -1",
    parameters="(none)",
    derivative=_abs_derivative,
    grad_at_zero=0.0, builtin="tf.abs", layer="AbsRectifier", can_die=False, saturates=False, saves="input",
    reference="Jarrett et al. 2009",
))
register(ActivationSpec(
    name="prelu", function=prelu,
    formula="max(0, x) + alpha * min(0, x)",
    derivative_formula="1 if x > 0 else alpha;  d/dalpha = min(0, x)",
    parameters="alpha: tensor (learned; layer init 0.25)",
    derivative=_prelu_derivative,
    grad_at_zero=0.0, builtin="keras.layers.PReLU", layer="PReLU", can_die=False, saturates=False,
    saves="input",
    reference="He et al. 2015, arXiv:1502.01852",
))
