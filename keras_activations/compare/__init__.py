"""`keras-activations compare`: the same network trained once per activation.

`compare(model_or_builder, data, activations=[...], epochs=..., out=...)` is the Python entry
point (see `keras_activations.compare.api`); `keras_activations.cli` is the command line over it.
"""

from keras_activations.compare.api import ComparisonResult, compare
from keras_activations.compare.errors import CompareError, ModelError
from keras_activations.compare.models import activation_layer

__all__ = ["compare", "ComparisonResult", "CompareError", "ModelError", "activation_layer"]
