"""Rectifier layers: LeakyReLU, AbsRectifier, PReLU, RReLU."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import keras

from keras_activations.activations.rrelu import check_bounds
from keras_activations.layers.base import ActivationLayer
from keras_activations.layers.params import ParameterShape
from keras_activations.spec import GradAtZero, check_real, resolve_grad_at_zero

_register = keras.saving.register_keras_serializable(package="keras_activations")


class _KinkedLayer(ActivationLayer):
    """A layer whose activation takes `grad_at_zero` (validated at construction)."""

    def __init__(self, grad_at_zero: GradAtZero, **kwargs):
        super().__init__(**kwargs)
        resolve_grad_at_zero(grad_at_zero, type(self).__name__, 0.0, 0.0)
        self.grad_at_zero = grad_at_zero

    def get_config(self):
        return {**super().get_config(), "grad_at_zero": self.grad_at_zero}


@_register
class LeakyReLU(_KinkedLayer):
    """Generalized rectifier layer: `max(0, x) + negative_slope * min(0, x)`.

    Args:
        negative_slope: any real slope for `x < 0` (0: ReLU, -1: |x|). Default 0.01.
        grad_at_zero: derivative at exactly 0: "left" (default, as tf.nn.leaky_relu), "right" or a number.
        **kwargs: base layer arguments.

    Example:

    >>> layer = keras_activations.LeakyReLU(negative_slope=0.2)
    """

    activation_name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, grad_at_zero: GradAtZero = "left", **kwargs):
        super().__init__(grad_at_zero, **kwargs)
        self.negative_slope = check_real(negative_slope, "LeakyReLU", "negative_slope")

    def activation_kwargs(self, inputs=None, training=None):
        return {"negative_slope": self.negative_slope, "grad_at_zero": self.grad_at_zero}

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


@_register
class AbsRectifier(_KinkedLayer):
    """Absolute value rectification layer, `|x|`.

    Args:
        grad_at_zero: derivative at exactly 0: "left" (-1), "right" (1) or a number (default 0.0, as tf.abs).
        **kwargs: base layer arguments.

    Example:

    >>> layer = keras_activations.AbsRectifier()
    """

    activation_name = "abs_rectifier"

    def __init__(self, grad_at_zero: GradAtZero = 0.0, **kwargs):
        super().__init__(grad_at_zero, **kwargs)

    def activation_kwargs(self, inputs=None, training=None):
        return {"grad_at_zero": self.grad_at_zero}


@_register
class PReLU(_KinkedLayer):
    """Parametric ReLU layer: `max(0, x) + alpha * min(0, x)` with a learned `alpha`.

    `alpha` is a float32 variable (also under mixed precision) passed to the custom gradient as an
    explicit input, one per feature unless shared.

    Args:
        alpha_initializer: initializer of alpha. Default 0.25 (He et al. 2015); a float means a constant.
        alpha_regularizer: optional regularizer.
        alpha_constraint: optional constraint.
        shared_axes: axes (1-based, batch excluded) along which alpha is shared, e.g. `[1, 2]` after a
            channels_last Conv2D (per-channel alpha); sizes along them may be unknown.
        grad_at_zero: derivative at exactly 0: "left" (alpha), "right" (1) or a number (default 0.0, as
            keras.layers.PReLU).
        **kwargs: base layer arguments.

    Example:

    >>> layer = keras_activations.PReLU(shared_axes=[1, 2])
    """

    activation_name = "prelu"

    def __init__(
        self,
        alpha_initializer: Union[float, str, keras.initializers.Initializer] = 0.25,
        alpha_regularizer=None,
        alpha_constraint=None,
        shared_axes: Optional[Union[int, Sequence[int]]] = None,
        grad_at_zero: GradAtZero = 0.0,
        **kwargs,
    ):
        super().__init__(grad_at_zero, **kwargs)
        self.params = ParameterShape("PReLU", shared_axes)
        self.alpha_initializer = self.params.initializer(alpha_initializer)
        self.alpha_regularizer = keras.regularizers.get(alpha_regularizer)
        self.alpha_constraint = keras.constraints.get(alpha_constraint)

    def build(self, input_shape):
        self.alpha = self.add_weight(
            shape=self.params.build(input_shape), name="alpha", initializer=self.alpha_initializer,
            regularizer=self.alpha_regularizer, constraint=self.alpha_constraint,
        )
        self.input_spec = self.params.input_spec(input_shape)

    def activation_kwargs(self, inputs=None, training=None):
        dtype = inputs.dtype if inputs is not None else self.compute_dtype
        return {"alpha": keras.ops.cast(self.alpha, dtype), "grad_at_zero": self.grad_at_zero}

    def get_config(self):
        return {
            **super().get_config(),
            "alpha_initializer": keras.initializers.serialize(self.alpha_initializer),
            "alpha_regularizer": keras.regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": keras.constraints.serialize(self.alpha_constraint),
            "shared_axes": self.params.shared_axes,
        }


@_register
class RReLU(_KinkedLayer):
    """Randomized leaky ReLU layer: random slopes from `U(lower, upper)` in training, their mean otherwise.

    Args:
        lower: lower slope bound, `>= 0`. Default 1/8.
        upper: upper slope bound, `>= lower`. Default 1/3.
        seed: optional int; the layer draws new slopes at every training step from a seeded
            `keras.random.SeedGenerator`, so a seeded run is reproducible.
        grad_at_zero: derivative at exactly 0: "left" (the slope, default), "right" or a number.
        **kwargs: base layer arguments.

    Example:

    >>> layer = keras_activations.RReLU(seed=42)
    """

    activation_name = "rrelu"

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, seed: Optional[int] = None,
                 grad_at_zero: GradAtZero = "left", **kwargs):
        super().__init__(grad_at_zero, **kwargs)
        self.lower, self.upper = check_bounds(lower, upper, "RReLU")
        if seed is not None:
            check_real(seed, "RReLU", "seed")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        return self.spec.function(inputs, **self.activation_kwargs(inputs, training))

    def activation_kwargs(self, inputs=None, training=None):
        kwargs = {"lower": self.lower, "upper": self.upper, "grad_at_zero": self.grad_at_zero}
        if training:
            kwargs.update(training=True, seed=self.seed_generator)
        return kwargs

    def get_config(self):
        return {**super().get_config(), "lower": self.lower, "upper": self.upper, "seed": self.seed}
