"""The parametric exponential linear unit (PELU) with learnable `a` and `b`."""

from __future__ import annotations

import numpy as np

from keras_activations._backend import as_float_tensor, compiled, param_tensor, tf, unbroadcast
from keras_activations.activations import _ops
from keras_activations.activations._math import expm1_nonpositive
from keras_activations.activations.registry import register
from keras_activations.spec import ActivationSpec


def _forward(x, a, b):
    return tf.where(x >= 0, (a / b) * x, a * expm1_nonpositive(x / b))


def _derivative(x, a, b):
    return tf.where(x >= 0, a / b, (a / b) * tf.math.exp(x / b))


def _backward_from_output(y, dy, a, b):
    # For x < 0: y = a*(exp(x/b) - 1), so a*exp(x/b) = y + a and x/b = log(y + a) - log(a).
    # For x >= 0: y = a*x/b. Hence df/dx = (y + a)/b or a/b, df/da = y/a on both sides,
    # df/db = -(y + a)*(x/b)/b or -y/b (0 * log(0) at full saturation is taken as 0).
    # The factors 1/a and 1/b of the parameter gradients leave the sums over the shared axes, which
    # are reduced in the same compiled pass (in float32 for half types). log(y + a) - log(a) is
    # log1p(y/a) to about 1 ulp of log(a), an absolute error, and much cheaper than XLA's log1p: a
    # CNN's training step with PELU(shared_axes=[1, 2]) went from 1.40-1.51x to 1.22-1.27x ReLU's.
    negative = y < 0
    exp_term = y + a
    inv_b = 1 / b
    dx = dy * tf.where(negative, exp_term, a) * inv_b
    dy_y = dy * y
    x_over_b = tf.math.log(exp_term) - tf.math.log(a)
    db_terms = tf.where(negative, tf.math.multiply_no_nan(x_over_b, dy * exp_term), dy_y)
    da = unbroadcast(dy_y, tf.shape(a), a.dtype) / a
    db = -unbroadcast(db_terms, tf.shape(b), b.dtype) * inv_b
    return dx, da, db


_FORWARD = compiled(_forward)
_BACKWARD = compiled(_backward_from_output)


def _check_positive(value, argument):
    if isinstance(value, (int, float, np.ndarray, np.number)):
        array = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(array) & (array > 0)):
            raise ValueError(
                f"pelu: argument `{argument}` must be > 0 (and finite) everywhere, got {value!r}."
            )


def pelu(x, a=1.0, b=1.0):
    """Parametric exponential linear unit (Trottier et al. 2017, arXiv:1605.09332).

    Formula: `f(x) = (a / b) * x if x >= 0 else a * (exp(x / b) - 1)`, with `a, b > 0` (tensors
    broadcastable to `x`, usually learned: see the `PELU` layer). Derivative: `a / b if x >= 0 else
    (a / b) * exp(x / b)`, continuous at 0. Gradients for `a` and `b` are returned (summed over the
    broadcast axes) and computed, like the gradient of `x`, from the output alone.

    Args:
        x: float tensor.
        a: positive scale of the negative saturation, `-a`. Default 1.0.
        b: positive scale of the exponential decay. Default 1.0.

    Returns:
        A tensor of `x`'s shape and dtype.

    Example:

    >>> keras_activations.pelu(tf.constant([-1.0, 2.0]), a=1.0, b=2.0)
    <tf.Tensor: ... numpy=array([-0.39346933, 1.], dtype=float32)>
    """
    x = as_float_tensor(x, "pelu")
    _check_positive(a, "a")
    _check_positive(b, "b")
    a = param_tensor(a, x.dtype, "pelu", "a")
    b = param_tensor(b, x.dtype, "pelu", "b")
    return _ops.parametric(x, (a, b), _FORWARD, _BACKWARD, save="output")


def _public_derivative(x, a=1.0, b=1.0):
    x = as_float_tensor(x, "pelu")
    return _derivative(x, param_tensor(a, x.dtype, "pelu", "a"), param_tensor(b, x.dtype, "pelu", "b"))


register(ActivationSpec(
    name="pelu", function=pelu,
    formula="(a / b) * x if x >= 0 else a * (exp(x / b) - 1)",
    derivative_formula="a / b if x >= 0 else (a / b) * exp(x / b)",
    parameters="a=1.0, b=1.0 (> 0; learned in the PELU layer)",
    derivative=_public_derivative,
    grad_at_zero=None, builtin="(none)", layer="PELU", can_die=False, saturates=True, saves="output",
    reference="Trottier et al. 2017, arXiv:1605.09332",
))
