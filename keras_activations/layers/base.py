"""`ActivationLayer`: the shared base of this package's elementwise activation layers."""

from __future__ import annotations

from typing import Any, Dict

import keras

from keras_activations.activations.registry import get_spec


class ActivationLayer(keras.layers.Layer):
    """Applies one registered activation elementwise; subclasses name it in `activation_name`.

    Subclasses return the activation's keyword arguments from `activation_kwargs()`; the forward pass,
    the derivative (`derivative`, used by `GradientMonitor`) and the docs all come from the
    activation's `ActivationSpec`. Masks pass through; the output shape is the input shape.
    """

    activation_name: str = ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.spec = get_spec(self.activation_name)

    def activation_kwargs(self, inputs=None, training=None) -> Dict[str, Any]:
        """The keyword arguments passed to the activation function besides the input."""
        return {}

    def call(self, inputs):
        return self.spec.function(inputs, **self.activation_kwargs(inputs))

    def derivative(self, inputs):
        """Elementwise derivative f'(inputs) with the layer's current parameters (inference mode)."""
        inputs = keras.ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        return self.spec.derivative(inputs, **self.activation_kwargs(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape
