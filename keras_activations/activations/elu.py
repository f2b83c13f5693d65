"""The exponential linear units: ELU, SELU and CELU (scaled ELUs sharing one pair of bodies)."""

from __future__ import annotations

from keras_activations._backend import as_float_tensor, compiled, tf
from keras_activations.activations import _ops
from keras_activations.activations._math import expm1_nonpositive
from keras_activations.activations.registry import register
from keras_activations.spec import ActivationSpec, GradAtZero, check_real, resolve_grad_at_zero

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _forward(x, scale, scaled_alpha, at_zero):  # noqa: ARG001 - shares the backward consts
    # scale * (x if x > 0 else alpha * expm1(x)); expm1 keeps full precision near 0, in TFLite too.
    return tf.where(x > 0, scale * x, scaled_alpha * expm1_nonpositive(x))


def _derivative(x, scale, scaled_alpha, at_zero):
    return tf.where(
        x > 0, scale, tf.where(x < 0, scaled_alpha * tf.math.exp(x), at_zero)
    )


def _derivative_from_output(y, scale, scaled_alpha, at_zero):
    # For x < 0, y = scale*alpha*(exp(x) - 1), so f'(x) = scale*alpha*exp(x) = y + scale*alpha.
    return tf.where(y > 0, scale, tf.where(y < 0, y + scaled_alpha, at_zero))


_FORWARD = compiled(_forward)
_BACKWARD_FROM_OUTPUT = compiled(lambda y, dy, *c: dy * _derivative_from_output(y, *c))
_BACKWARD_FROM_INPUT = compiled(lambda x, dy, *c: dy * _derivative(x, *c))


def _constants(x, scale, alpha, grad_at_zero, name):
    at_zero = resolve_grad_at_zero(grad_at_zero, name, left=scale * alpha, right=scale)
    return [tf.constant(v, x.dtype) for v in (scale, scale * alpha, at_zero)]


# TensorFlow's fused gradient kernels compute exactly the output-form derivative above, and they
# write into a dead input's buffer where an XLA call allocates a fresh one (on CPU, fresh pages cost
# more than the arithmetic). They serve the cases whose kink value they share.
def _elu_grad(y, dy, *consts):
    return tf.raw_ops.EluGrad(gradients=dy, outputs=y)


def _selu_grad(y, dy, *consts):
    return tf.raw_ops.SeluGrad(gradients=dy, outputs=y)


def _scaled_elu(x, scale, alpha, grad_at_zero, name):
    x = as_float_tensor(x, name)
    consts = _constants(x, scale, alpha, grad_at_zero, name)
    at_zero = resolve_grad_at_zero(grad_at_zero, name, left=scale * alpha, right=scale)
    if alpha == 0:
        # With alpha = 0 the output is 0 on the whole negative half-line, so x = 0 cannot be told
        # from x < 0 by the output: keep the input instead.
        return _ops.elementwise(x, _FORWARD, _BACKWARD_FROM_INPUT, consts, save="input")
    if scale == 1 and alpha == 1 and at_zero == 1:
        backward = _elu_grad
    elif scale == SELU_SCALE and alpha == SELU_ALPHA and at_zero == SELU_SCALE:
        backward = _selu_grad
    else:
        backward = _BACKWARD_FROM_OUTPUT
    return _ops.elementwise(x, _FORWARD, backward, consts, save="output")


def elu(x, alpha: float = 1.0, grad_at_zero: GradAtZero = "right"):
    """Exponential linear unit (Clevert et al. 2015, arXiv:1511.07289).

    Formula: `f(x) = x if x > 0 else alpha * (exp(x) - 1)`, computed with an `expm1` that is exact
    near 0 (unlike graph-mode `tf.nn.elu`), also after TFLite conversion. Derivative: `1 if x > 0
    else alpha * exp(x)`, computed in the backward pass from the output (`y + alpha`), like
    TensorFlow's EluGrad.

    Args:
        x: float tensor (float16, bfloat16, float32 or float64).
        alpha: the negative saturation value, `>= 0`. Default 1.0.
        grad_at_zero: derivative returned at exactly `x == 0` when `alpha != 1` (where f' jumps from
            `alpha` to 1): `"left"` (alpha), `"right"` (1, the default, as `tf.nn.elu`) or a number.

    Returns:
        A tensor of `x`'s shape and dtype.

    Example:

    >>> keras_activations.elu(tf.constant([-1.0, 0.0, 2.0]))
    <tf.Tensor: ... numpy=array([-0.63212055, 0., 2.], dtype=float32)>
    >>> layer = keras.layers.Dense(64, activation=keras_activations.elu)
    """
    alpha = check_real(alpha, "elu", "alpha", minimum=0.0)
    return _scaled_elu(x, 1.0, alpha, grad_at_zero, "elu")


def selu(x, grad_at_zero: GradAtZero = "right"):
    """Scaled exponential linear unit (Klambauer et al. 2017, arXiv:1706.02515).

    Formula: `f(x) = scale * elu(x, alpha)` with `alpha = 1.6732632423543772848170429916717` and
    `scale = 1.0507009873554804934193349852946`, the constants for which mean 0 / variance 1 is a
    fixed point (use with `lecun_normal` initialization). Derivative: `scale if x > 0 else
    scale * alpha * exp(x)`; it jumps at 0 from `scale*alpha` (1.7581) to `scale` (1.0507).

    Args:
        x: float tensor.
        grad_at_zero: derivative at exactly `x == 0`: `"left"` (scale*alpha), `"right"` (scale, the
            default, as `tf.nn.selu`) or a number.

    Returns:
        A tensor of `x`'s shape and dtype.

    Example:

    >>> layer = keras.layers.Dense(64, activation=keras_activations.selu,
    ...                            kernel_initializer="lecun_normal")
    """
    return _scaled_elu(x, SELU_SCALE, SELU_ALPHA, grad_at_zero, "selu")


def celu(x, alpha: float = 1.0):
    """Continuously differentiable exponential linear unit (Barron 2017, arXiv:1704.07483).

    Formula: `f(x) = max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`. Unlike ELU with
    `alpha != 1`, its derivative is continuous at 0 for every alpha: `1 if x > 0 else exp(x / alpha)`
    (computed in the backward pass from the output as `y / alpha + 1`).

    Args:
        x: float tensor.
        alpha: `> 0`. Default 1.0 (where CELU equals ELU).

    Returns:
        A tensor of `x`'s shape and dtype.

    Example:

    >>> layer = keras.layers.Dense(64, activation=keras_activations.celu)
    """
    alpha = check_real(alpha, "celu", "alpha", minimum=0.0, strict=True)
    x = as_float_tensor(x, "celu")
    consts = [tf.constant(alpha, x.dtype)]
    backward = _elu_grad if alpha == 1 else _CELU_BACKWARD
    return _ops.elementwise(x, _CELU_FORWARD, backward, consts, save="output")


def _celu_forward(x, alpha):
    return tf.where(x > 0, x, alpha * expm1_nonpositive(x / alpha))


def _celu_derivative(x, alpha):
    return tf.where(x > 0, tf.ones_like(x), tf.math.exp(x / alpha))


_CELU_FORWARD = compiled(_celu_forward)


def _CELU_BACKWARD(y, dy, alpha):
    # f'(x) = y / alpha + 1 for y < 0, else 1: EluGrad of the output divided by alpha.
    return tf.raw_ops.EluGrad(gradients=dy, outputs=y / alpha)


def _elu_family_derivative(scale, alpha_default, name):
    def derivative(x, alpha=alpha_default, grad_at_zero="right"):
        x = as_float_tensor(x, name)
        consts = _constants(x, scale, alpha, grad_at_zero, name)
        return _derivative(x, *consts)

    return derivative


def _selu_derivative(x, grad_at_zero="right"):
    return _elu_family_derivative(SELU_SCALE, SELU_ALPHA, "selu")(x, SELU_ALPHA, grad_at_zero)


def _celu_public_derivative(x, alpha=1.0):
    x = as_float_tensor(x, "celu")
    return _celu_derivative(x, tf.constant(alpha, x.dtype))


register(ActivationSpec(
    name="elu", function=elu,
    formula="x if x > 0 else alpha * (exp(x) - 1)",
    derivative_formula="1 if x > 0 else alpha * exp(x)  (= y + alpha)",
    parameters="alpha=1.0 (>= 0)",
    derivative=_elu_family_derivative(1.0, 1.0, "elu"),
    grad_at_zero="right", builtin="tf.nn.elu", layer="ELU", can_die=False, saturates=True, saves="output",
    reference="Clevert et al. 2015, arXiv:1511.07289",
))
register(ActivationSpec(
    name="selu", function=selu,
    formula="scale * (x if x > 0 else alpha * (exp(x) - 1))",
    derivative_formula="scale if x > 0 else scale * alpha * exp(x)  (= y + scale * alpha)",
    parameters="alpha=1.6732632423543772, scale=1.0507009873554805 (fixed)",
    derivative=_selu_derivative,
    grad_at_zero="right", builtin="tf.nn.selu", layer="SELU", can_die=False, saturates=True, saves="output",
    reference="Klambauer et al. 2017, arXiv:1706.02515",
))
register(ActivationSpec(
    name="celu", function=celu,
    formula="max(0, x) + min(0, alpha * (exp(x / alpha) - 1))",
    derivative_formula="1 if x > 0 else exp(x / alpha)  (= y / alpha + 1)",
    parameters="alpha=1.0 (> 0)",
    derivative=_celu_public_derivative,
    grad_at_zero=None, builtin="keras.activations.celu", layer="CELU", can_die=False, saturates=True,
    saves="output", reference="Barron 2017, arXiv:1704.07483",
))
