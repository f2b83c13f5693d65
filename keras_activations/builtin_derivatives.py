"""Closed-form derivatives of Keras's built-in activations and layers.

`GradientMonitor` needs f'(x) of every activation it watches to find dead
and saturated units. This module holds the closed forms for what Keras
ships (`keras.activations.*` and the `ReLU`, `LeakyReLU`, `ELU`, `PReLU`
and `Activation` layers). The derivatives of this package's own activations
live with the activations themselves (`keras_activations.activations.get_spec`
and `layer.derivative`); `resolve_function` and `resolve_layer` look there
first, so there is one source of truth for each function.

Every derivative takes the activation's INPUT `x` (the pre-activation) and
returns a tensor of the same shape. At a kink the value is the one-sided
derivative TensorFlow's own gradient uses (`relu'(0) = 0`).
"""

import math
from typing import Callable
from typing import NamedTuple
from typing import Optional

import keras
import tensorflow as tf

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


class Derivative(NamedTuple):
    """A resolved derivative.

    Attributes:
        name: Activation name, e.g. `"relu"`.
        fn: Callable mapping the activation's input `x` to `f'(x)`.
        can_die: `True` when `f'` is exactly 0 on a region of inputs, so a
            unit can be dead; `False` when `f' > 0` everywhere (leaky
            rectifiers, the ELU family, sigmoid, tanh...).
        of_output: The same derivative as a function of the activation's
            OUTPUT `y = f(x)`, equal to `fn(x)` for every non-NaN `x`,
            or `None`. `GradientMonitor` prefers it: a site read only
            through its output lets Grappler keep the activation fused into
            the layer's matrix product, and keeps no pre-activation alive.
        saturates: `True` when `f'` tends to 0 without being 0 on a region
            (`f` approaches an asymptote: sigmoid, tanh, softplus, the ELU
            family): `GradientMonitor` calls the share of pairs with a tiny
            `|f'|` `saturation`. `False` when `f'` is a step or otherwise
            piecewise, with flat pieces (the rectifier family, hard
            sigmoid/tanh): such pairs are switched off, and the share is the
            `inactive_fraction`.
    """

    name: str
    fn: Callable[[tf.Tensor], tf.Tensor]
    can_die: bool
    of_output: Optional[Callable[[tf.Tensor], tf.Tensor]] = None
    saturates: bool = False


def _ones(x):
    return tf.ones_like(x)


def positive_step(z):
    """1 where z > 0, else 0 (NaN stays NaN), with float ops only:
    TensorFlow's comparison ops are not vectorized on CPU and were 3-5x
    slower here (`GradientMonitor` runs this on every activation of every
    training step). `maximum`, not `relu`: Grappler composes chains of unary
    ops into one `_UnaryOpsComposition`, which is slower still."""
    return tf.maximum(tf.sign(z), 0.0)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Derivative of `keras.activations.relu` with all its options."""
    if max_value is not None:
        above = x > threshold
        inside = tf.logical_and(x > 0, x < max_value)
        d_above = tf.cast(inside, x.dtype)
        return tf.where(above, d_above, tf.cast(negative_slope, x.dtype))
    step = positive_step(x - threshold if threshold else x)
    if negative_slope == 0:
        return step
    return step + negative_slope * (1 - step)  # exactly 1 or the slope


def leaky_relu(x, negative_slope=0.2):
    return relu(x, negative_slope)


class StepOfOutput:
    """A derivative that is a step in the sign of the output:
    `f'(x) = below` where `y <= 0`, `above` where `y > 0` (NaN where `y` is
    NaN), with `0 <= below <= above`.

    Callable like any derivative; `GradientMonitor` also reads `below` and
    `above`, so a unit's largest `|f'|` over a window is the step of its
    largest output, and the saturated pairs are counted from `sign(y)`
    alone: one pass over the output instead of five.
    """

    def __init__(self, below: float, above: float = 1.0):
        self.below = float(below)
        self.above = float(above)

    def __call__(self, y):
        step = positive_step(y)
        return self.above * step + self.below * (1 - step)


def _relu_of_output(negative_slope):
    """`relu`'s derivative from its output, for threshold 0, no cap and
    0 <= slope <= 1 (then `y > 0` exactly when `x > 0`, and `y` is NaN when
    `x` is), else `None`."""
    if not 0 <= negative_slope <= 1:
        return None
    return StepOfOutput(negative_slope)


def _sigmoid_of_output(y):
    return y * (1 - y)  # what `sigmoid` computes from s = sigmoid(x)


def _tanh_of_output(y):
    return 1 - y * y  # what `tanh` computes from t = tanh(x)


def _elu_of_output(alpha=1.0, scale=1.0):
    """ELU's (and SELU's) derivative from its output: `scale` where y > 0,
    else `y + scale * alpha` (= scale * alpha * e^x). Reading only the output
    keeps the activation fused into its layer's matrix product; the price is
    that below x = -17 (float32) `y + alpha` rounds to 0, so `|f'| < 4e-8`
    reads as 0 there."""

    def derivative(y):
        return tf.where(y > 0, scale * tf.ones_like(y), y + scale * alpha)

    return derivative


def _relu6_of_output(y):
    return tf.cast(tf.logical_and(y > 0, y < 6), y.dtype)


def _softplus_of_output(y):
    return -tf.math.expm1(-y)  # sigmoid(x) = 1 - e^-softplus(x)


def relu6(x):
    return tf.cast(tf.logical_and(x > 0, x < 6), x.dtype)


def elu(x, alpha=1.0):
    return tf.where(x > 0, tf.ones_like(x), alpha * tf.exp(tf.minimum(x, 0)))


def selu(x):
    return _SELU_SCALE * elu(x, _SELU_ALPHA)


def celu(x, alpha=1.0):
    return tf.where(x > 0, tf.ones_like(x), tf.exp(tf.minimum(x, 0) / alpha))


def sigmoid(x):
    s = tf.sigmoid(x)
    return s * (1 - s)


def tanh(x):
    t = tf.tanh(x)
    return 1 - t * t


def softplus(x):
    return tf.sigmoid(x)


def softsign(x):
    return 1 / tf.square(1 + tf.abs(x))


def silu(x):
    s = tf.sigmoid(x)
    return s * (1 + x * (1 - s))


def gelu(x, approximate=False):
    if approximate:
        c = math.sqrt(2 / math.pi)
        inner = c * (x + 0.044715 * x**3)
        t = tf.tanh(inner)
        d_inner = c * (1 + 3 * 0.044715 * x * x)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * d_inner
    cdf = 0.5 * (1 + tf.math.erf(x / math.sqrt(2)))
    pdf = tf.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return cdf + x * pdf


def hard_sigmoid(x):
    # keras.activations.hard_sigmoid(x) = relu6(x + 3) / 6
    return tf.cast(tf.logical_and(x > -3, x < 3), x.dtype) / 6


def hard_silu(x):
    # x * relu6(x + 3) / 6
    mid = (2 * x + 3) / 6
    return tf.where(x <= -3, tf.zeros_like(x), tf.where(x >= 3, 1.0, mid))


def hard_tanh(x):
    return tf.cast(tf.logical_and(x > -1, x < 1), x.dtype)


def log_sigmoid(x):
    return tf.sigmoid(-x)


def exponential(x):
    return tf.exp(x)


def mish(x):
    sp = tf.math.softplus(x)
    t = tf.tanh(sp)
    return t + x * (1 - t * t) * tf.sigmoid(x)


def tanh_shrink(x):
    t = tf.tanh(x)
    return t * t


def sparse_plus(x):
    mid = (x + 1) / 2
    return tf.where(x <= -1, tf.zeros_like(x), tf.where(x >= 1, 1.0, mid))


def squareplus(x, b=4):
    return 0.5 * (1 + x / tf.sqrt(x * x + b))


# name -> (derivative, can_die, saturates). `can_die` is about the default
# parameters; `saturates` see `Derivative`.
_BUILTINS = {
    "relu": (relu, True, False),
    "leaky_relu": (leaky_relu, False, False),
    "relu6": (relu6, True, False),
    "elu": (elu, False, True),
    "selu": (selu, False, True),
    "celu": (celu, False, True),
    "sigmoid": (sigmoid, False, True),
    "tanh": (tanh, False, True),
    "softplus": (softplus, False, True),
    "softsign": (softsign, False, True),
    "silu": (silu, False, True),
    "swish": (silu, False, True),
    "gelu": (gelu, False, True),
    "hard_sigmoid": (hard_sigmoid, True, False),
    "hard_silu": (hard_silu, True, False),
    "hard_swish": (hard_silu, True, False),
    "hard_tanh": (hard_tanh, True, False),
    "log_sigmoid": (log_sigmoid, False, True),
    "linear": (_ones, False, False),
    "exponential": (exponential, False, True),
    "mish": (mish, False, True),
    "tanh_shrink": (tanh_shrink, True, False),
    "sparse_plus": (sparse_plus, True, False),
    "squareplus": (squareplus, False, True),
}

# name -> derivative as a function of the output, where it is the same function.
_OF_OUTPUT = {
    "relu": _relu_of_output(0.0),
    "leaky_relu": _relu_of_output(0.2),
    "sigmoid": _sigmoid_of_output,
    "tanh": _tanh_of_output,
    "elu": _elu_of_output(),
    "selu": _elu_of_output(_SELU_ALPHA, _SELU_SCALE),
    "relu6": _relu6_of_output,
    "softplus": _softplus_of_output,
    "exponential": tf.identity,
    "linear": _ones,
}

SUPPORTED_ACTIVATIONS = tuple(sorted(_BUILTINS))
"""Names of the Keras built-in activations with a closed-form derivative."""


def _builtin_by_identity():
    table = {}
    for name in _BUILTINS:
        try:
            fn = keras.activations.get(name)
        except (ValueError, TypeError):
            continue
        table.setdefault(fn, name)
    for fn, name in (
        (tf.nn.relu, "relu"),
        (tf.nn.relu6, "relu6"),
        (tf.nn.elu, "elu"),
        (tf.nn.selu, "selu"),
        (tf.nn.sigmoid, "sigmoid"),
        (tf.sigmoid, "sigmoid"),
        (tf.nn.tanh, "tanh"),
        (tf.tanh, "tanh"),
        (tf.nn.softplus, "softplus"),
        (tf.nn.softsign, "softsign"),
        (tf.nn.silu, "silu"),
        (tf.nn.gelu, "gelu"),
        (tf.nn.leaky_relu, "leaky_relu"),
    ):
        table.setdefault(fn, name)
    return table


_IDENTITY = None


def _core_spec(obj):
    """This package's spec for `obj`, or `None` (also while the core is
    not importable)."""
    try:
        from keras_activations import activations as core
    except ImportError:
        return None
    get_spec = getattr(core, "get_spec", None)
    if get_spec is None:
        return None
    try:
        return get_spec(obj)
    except (ValueError, TypeError, KeyError):
        return None


def resolve_function(fn) -> Optional[Derivative]:
    """Finds the derivative of an activation function.

    Args:
        fn: An activation: a name (`"relu"`), a Keras built-in function
            (`keras.activations.elu`), a TensorFlow one (`tf.nn.relu`) or one
            of this package's functions.

    Returns:
        A `Derivative`, or `None` when the derivative is unknown (a lambda,
        a `functools.partial`, a non-elementwise activation like softmax).

    Example:

    >>> d = resolve_function("relu")
    >>> d.fn(tf.constant([-1.0, 2.0])).numpy()
    array([0., 1.], dtype=float32)
    """
    global _IDENTITY
    spec = _core_spec(fn)
    if spec is not None:
        return Derivative(
            spec.name, lambda x: spec.derivative(x), bool(spec.can_die), saturates=bool(spec.saturates)
        )
    if isinstance(fn, str):
        name = fn
    else:
        if _IDENTITY is None:
            _IDENTITY = _builtin_by_identity()
        try:
            name = _IDENTITY.get(fn)
        except TypeError:  # unhashable callable
            name = None
    if name is None or name not in _BUILTINS:
        return None
    derivative, can_die, saturates = _BUILTINS[name]
    return Derivative(name, derivative, can_die, _OF_OUTPUT.get(name), saturates)


def resolve_layer(layer) -> Optional[Derivative]:
    """Finds the derivative of an activation layer.

    Supports Keras's `ReLU` (all options), `LeakyReLU`, `ELU`, `PReLU` and
    `Activation` layers, and every elementwise layer of this package (which
    has `layer.derivative(inputs)`).

    Args:
        layer: A Keras layer.

    Returns:
        A `Derivative`, or `None` when the layer is not an elementwise
        activation layer this module can differentiate.
    """
    layers = keras.layers
    if type(layer).__module__.startswith("keras_activations") and callable(
        getattr(layer, "derivative", None)
    ):
        spec = getattr(layer, "spec", None)
        can_die = bool(getattr(spec, "can_die", True))
        saturates = bool(getattr(spec, "saturates", False))
        return Derivative(type(layer).__name__, layer.derivative, can_die, saturates=saturates)
    if isinstance(layer, layers.ReLU):
        slope = float(layer.negative_slope)
        max_value = layer.max_value
        max_value = None if max_value is None else float(max_value)
        threshold = float(layer.threshold)
        return Derivative(
            "relu",
            lambda x: relu(x, slope, max_value, threshold),
            slope == 0.0 or max_value is not None,
            _relu_of_output(slope)
            if max_value is None and threshold == 0.0
            else None,
        )
    if isinstance(layer, layers.LeakyReLU):
        slope = float(layer.negative_slope)
        return Derivative(
            "leaky_relu",
            lambda x: leaky_relu(x, slope),
            slope == 0.0,
            _relu_of_output(slope),
        )
    if isinstance(layer, layers.ELU):
        alpha = float(layer.alpha)
        return Derivative("elu", lambda x: elu(x, alpha), alpha == 0.0, _elu_of_output(alpha), alpha != 0.0)
    if isinstance(layer, layers.PReLU):

        def prelu(x):
            alpha = tf.cast(layer.alpha, x.dtype)
            return tf.where(x > 0, tf.ones_like(x), alpha + tf.zeros_like(x))

        # A PReLU unit can only die if its learned slope reaches 0.
        return Derivative("prelu", prelu, True)
    if isinstance(layer, layers.Activation):
        return resolve_function(layer.activation)
    return None
