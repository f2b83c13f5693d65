"""Activation functions with hand-written gradients, and their registry.

Each module defines its activations' forward bodies, derivatives and specs together; importing this
package registers them all (with this package's registry and with Keras serialization).
"""

from keras_activations.activations.elu import celu, elu, selu
from keras_activations.activations.isrlu import isrlu
from keras_activations.activations.maxout import maxout, maxout_winner
from keras_activations.activations.pelu import pelu
from keras_activations.activations.registry import (
    available,
    deserialize,
    get,
    get_spec,
    serialize,
    specs,
)
from keras_activations.activations.rectifiers import abs_rectifier, leaky_relu, prelu
from keras_activations.activations.rrelu import rrelu
