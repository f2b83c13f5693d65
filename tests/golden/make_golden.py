"""Writes the golden `.keras` files the tests load: run once per release that changes the format.

    python tests/golden/make_golden.py

Each file is a small model using every layer and every function of this version, with its inputs,
outputs and input gradients in a `.npz` beside it. A later version that cannot read these files, or
reads them into a different function, fails CI.
"""

import os
import sys

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import keras_activations as ka  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build_model():
    """Every layer of the package (non-default arguments) and every function usable as `activation=`."""
    keras.utils.set_random_seed(1234)
    inputs = keras.Input((12,))
    h = keras.layers.Dense(12, activation=ka.elu)(inputs)
    h = keras.layers.Dense(12, activation=ka.selu)(h)
    h = keras.layers.Dense(12, activation=ka.celu)(h)
    h = keras.layers.Dense(12, activation=ka.isrlu)(h)
    h = keras.layers.Dense(12, activation=ka.leaky_relu)(h)
    h = keras.layers.Dense(12, activation=ka.abs_rectifier)(h)
    h = keras.layers.Dense(12, activation=ka.rrelu)(h)
    h = ka.ELU(alpha=0.5, grad_at_zero="left")(h)
    h = ka.SELU(grad_at_zero=0.25)(keras.layers.Dense(12)(h))
    h = ka.CELU(alpha=0.7)(keras.layers.Dense(12)(h))
    h = ka.PELU(a_initializer=1.3, b_initializer=0.6)(keras.layers.Dense(12)(h))
    h = ka.ISRLU(alpha=2.0)(keras.layers.Dense(12)(h))
    h = ka.LeakyReLU(negative_slope=0.2, grad_at_zero="right")(keras.layers.Dense(12)(h))
    h = ka.AbsRectifier(grad_at_zero=0.5)(keras.layers.Dense(12)(h))
    h = ka.PReLU(alpha_initializer=0.3)(keras.layers.Dense(12)(h))
    h = ka.RReLU(lower=0.1, upper=0.2, seed=3)(keras.layers.Dense(12)(h))
    outputs = ka.Maxout(num_units=4)(keras.layers.Dense(12)(h))
    return keras.Model(inputs, outputs, name="all_activations")


def outputs_and_gradients(model, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=False)
    return y.numpy(), tape.gradient(y, x).numpy()


def main():
    model = build_model()
    x = np.random.RandomState(0).randn(16, 12).astype("float32")
    y, g = outputs_and_gradients(model, x)
    stem = os.path.join(HERE, f"all_activations_v{ka.__version__}")
    model.save(stem + ".keras")
    np.savez(stem + ".npz", x=x, y=y, gradient=g)
    print("wrote", stem + ".keras")


if __name__ == "__main__":
    main()
