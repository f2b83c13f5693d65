"""Keras layers for every activation of the package."""

from keras_activations.layers.base import ActivationLayer
from keras_activations.layers.elu import CELU, ELU, ISRLU, PELU, SELU
from keras_activations.layers.maxout import Maxout
from keras_activations.layers.rectifiers import AbsRectifier, LeakyReLU, PReLU, RReLU
