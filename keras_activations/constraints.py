"""Weight constraints used by the learnable activations."""

from __future__ import annotations

import keras

from keras_activations.spec import check_real


@keras.saving.register_keras_serializable(package="keras_activations")
class MinValue(keras.constraints.Constraint):
    """Clips a weight from below after each update: `w = max(w, min_value)`.

    PELU keeps its `a` and `b` positive this way, clipping at 0.1 as Trottier et al. (2017) do.

    Args:
        min_value: the smallest allowed value. Default 0.1.

    Example:

    >>> layer = keras_activations.PELU(a_constraint=keras_activations.MinValue(0.05))
    """

    def __init__(self, min_value: float = 0.1):
        self.min_value = check_real(min_value, "MinValue", "min_value")

    def __call__(self, w):
        return keras.ops.maximum(w, keras.ops.cast(self.min_value, w.dtype))

    def get_config(self):
        return {"min_value": self.min_value}
