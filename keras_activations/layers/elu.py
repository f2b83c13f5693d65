"""Layers of the exponential family: ELU, SELU, CELU, PELU, ISRLU."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import keras

from keras_activations.constraints import MinValue
from keras_activations.layers.base import ActivationLayer
from keras_activations.layers.params import ParameterShape
from keras_activations.spec import GradAtZero, check_real, resolve_grad_at_zero

_register = keras.saving.register_keras_serializable(package="keras_activations")


@_register
class ELU(ActivationLayer):
    """Exponential linear unit layer: `x if x > 0 else alpha * (exp(x) - 1)`.

    See `keras_activations.elu`. Exact near 0 (uses expm1), gradient from the output.

    Args:
        alpha: negative saturation value, `>= 0`. Default 1.0.
        grad_at_zero: derivative at exactly 0 when `alpha != 1`: "left", "right" (default) or a number.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Example:

    >>> model = keras.Sequential([keras.layers.Dense(64), keras_activations.ELU(alpha=0.5)])
    """

    activation_name = "elu"

    def __init__(self, alpha: float = 1.0, grad_at_zero: GradAtZero = "right", **kwargs):
        super().__init__(**kwargs)
        self.alpha = check_real(alpha, "ELU", "alpha", minimum=0.0)
        self.grad_at_zero = grad_at_zero
        resolve_grad_at_zero(grad_at_zero, "ELU", 0.0, 0.0)

    def activation_kwargs(self, inputs=None, training=None):
        return {"alpha": self.alpha, "grad_at_zero": self.grad_at_zero}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "grad_at_zero": self.grad_at_zero}


@_register
class SELU(ActivationLayer):
    """Scaled exponential linear unit layer (use with `lecun_normal` initialization).

    See `keras_activations.selu` for the formula and constants.

    Args:
        grad_at_zero: derivative at exactly 0: "left", "right" (default) or a number.
        **kwargs: base layer arguments.

    Example:

    >>> layer = keras_activations.SELU()
    """

    activation_name = "selu"

    def __init__(self, grad_at_zero: GradAtZero = "right", **kwargs):
        super().__init__(**kwargs)
        resolve_grad_at_zero(grad_at_zero, "SELU", 0.0, 0.0)
        self.grad_at_zero = grad_at_zero

    def activation_kwargs(self, inputs=None, training=None):
        return {"grad_at_zero": self.grad_at_zero}

    def get_config(self):
        return {**super().get_config(), "grad_at_zero": self.grad_at_zero}


@_register
class CELU(ActivationLayer):
    """Continuously differentiable ELU layer: `max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`.

    Args:
        alpha: `> 0`. Default 1.0.
        **kwargs: base layer arguments.

    Example:

    >>> layer = keras_activations.CELU(alpha=0.5)
    """

    activation_name = "celu"

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = check_real(alpha, "CELU", "alpha", minimum=0.0, strict=True)

    def activation_kwargs(self, inputs=None, training=None):
        return {"alpha": self.alpha}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@_register
class ISRLU(ActivationLayer):
    """Inverse square root linear unit layer: `x if x >= 0 else x / sqrt(1 + alpha * x^2)`.

    Args:
        alpha: `>= 0`. Default 1.0.
        **kwargs: base layer arguments.

    Example:

    >>> layer = keras_activations.ISRLU(alpha=1.0)
    """

    activation_name = "isrlu"

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = check_real(alpha, "ISRLU", "alpha", minimum=0.0)

    def activation_kwargs(self, inputs=None, training=None):
        return {"alpha": self.alpha}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@_register
class PELU(ActivationLayer):
    """Parametric ELU layer with learnable `a, b > 0`: `(a/b) x if x >= 0 else a (exp(x/b) - 1)`.

    Both parameters are float32 variables (also under mixed precision), one per feature unless
    shared, kept positive by `MinValue(0.1)` as in Trottier et al. 2017.

    Args:
        a_initializer: initializer of `a`. Default 1.0 (a float means a constant).
        b_initializer: initializer of `b`. Default 1.0.
        a_regularizer, b_regularizer: optional regularizers.
        a_constraint, b_constraint: constraints. Default `MinValue(0.1)`.
        shared_axes: axes (1-based, batch excluded) along which one parameter is shared, e.g. `[1, 2]`
            for per-channel parameters after a channels_last Conv2D. Unknown sizes are allowed there.
        **kwargs: base layer arguments.

    Example:

    >>> layer = keras_activations.PELU(shared_axes=[1, 2])
    """

    activation_name = "pelu"

    def __init__(
        self,
        a_initializer: Union[float, str, keras.initializers.Initializer] = 1.0,
        b_initializer: Union[float, str, keras.initializers.Initializer] = 1.0,
        a_regularizer=None,
        b_regularizer=None,
        a_constraint="default",
        b_constraint="default",
        shared_axes: Optional[Union[int, Sequence[int]]] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.params = ParameterShape("PELU", shared_axes)
        self.a_initializer = self.params.initializer(a_initializer)
        self.b_initializer = self.params.initializer(b_initializer)
        self.a_regularizer = keras.regularizers.get(a_regularizer)
        self.b_regularizer = keras.regularizers.get(b_regularizer)
        self.a_constraint = MinValue(0.1) if a_constraint == "default" else keras.constraints.get(a_constraint)
        self.b_constraint = MinValue(0.1) if b_constraint == "default" else keras.constraints.get(b_constraint)

    def build(self, input_shape):
        shape = self.params.build(input_shape)
        self.a = self.add_weight(shape=shape, name="a", initializer=self.a_initializer,
                                 regularizer=self.a_regularizer, constraint=self.a_constraint)
        self.b = self.add_weight(shape=shape, name="b", initializer=self.b_initializer,
                                 regularizer=self.b_regularizer, constraint=self.b_constraint)
        self.input_spec = self.params.input_spec(input_shape)

    def activation_kwargs(self, inputs=None, training=None):
        dtype = inputs.dtype if inputs is not None else self.compute_dtype
        return {"a": keras.ops.cast(self.a, dtype), "b": keras.ops.cast(self.b, dtype)}

    def get_config(self):
        return {
            **super().get_config(),
            "a_initializer": keras.initializers.serialize(self.a_initializer),
            "b_initializer": keras.initializers.serialize(self.b_initializer),
            "a_regularizer": keras.regularizers.serialize(self.a_regularizer),
            "b_regularizer": keras.regularizers.serialize(self.b_regularizer),
            "a_constraint": keras.constraints.serialize(self.a_constraint),
            "b_constraint": keras.constraints.serialize(self.b_constraint),
            "shared_axes": self.params.shared_axes,
        }
