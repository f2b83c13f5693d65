"""Models using the package save, load and export like any Keras model, custom gradients included."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_activations as ka
from tests.test_layers import FUNCTIONS_AS_DENSE_ACTIVATION, LAYERS

GOLDEN = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "golden", "*.keras")))
# Inputs with exact zeros, where a custom gradient's kink choice differs from what autodiff of the
# forward formula would give: a lost custom gradient shows up there.
X = np.array([[0.0, -0.0, -2.5, -0.3, 0.0, 0.4, 1.7, -1e-7, 3.0, -4.0, 0.0, 2.0]] * 3, "float32")
X[1] *= -1.5
X[2] = np.linspace(-3, 3, 12)


def value_and_gradient(fn, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return y.numpy(), tape.gradient(y, x).numpy()


def layer_model(name):
    inputs = keras.Input((12,))
    return keras.Model(inputs, LAYERS[name]()(inputs))


def function_model(name):
    inputs = keras.Input((12,))
    dense = keras.layers.Dense(12, activation=ka.get(name), kernel_initializer="identity")
    return keras.Model(inputs, dense(inputs))


MODELS = [("layer", n) for n in sorted(LAYERS)] + [("function", n) for n in FUNCTIONS_AS_DENSE_ACTIVATION]


@pytest.mark.parametrize("kind,name", MODELS)
def test_keras_file_and_saved_model_round_trip_with_equal_gradients(kind, name, tmp_path):
    model = (layer_model if kind == "layer" else function_model)(name)
    y, g = value_and_gradient(lambda x: model(x, training=False), X)

    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    y2, g2 = value_and_gradient(lambda x: loaded(x, training=False), X)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(g2, g)
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()

    export_dir = str(tmp_path / "exported")
    model.export(export_dir, verbose=False)
    restored = tf.saved_model.load(export_dir)
    y3, g3 = value_and_gradient(restored.serve, X)
    np.testing.assert_array_equal(y3, y)
    np.testing.assert_array_equal(g3, g)


def test_exported_model_keeps_the_custom_kink_gradient(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, ka.LeakyReLU(0.1, grad_at_zero=0.5)(inputs))
    model.export(str(tmp_path / "m"), verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "m"))
    _, grad = value_and_gradient(restored.serve, np.array([[0.0, -1.0, 1.0]], "float32"))
    # Autodiff of the forward formula would give 1 at 0; the custom gradient gives the chosen 0.5.
    np.testing.assert_allclose(grad, [[0.5, 0.1, 1.0]])


def test_serialized_activation_names_are_registered_functions(tmp_path):
    model = function_model("celu")
    config = model.layers[-1].get_config()["activation"]
    assert config["config"] == "keras_activations>celu"
    assert keras.activations.deserialize(config) is ka.celu


@pytest.mark.skipif(not GOLDEN, reason="no golden files")
@pytest.mark.parametrize("path", GOLDEN, ids=os.path.basename)
def test_golden_files_of_earlier_versions_still_load_and_compute_the_same(path):
    expected = np.load(path[: -len(".keras")] + ".npz")
    model = keras.saving.load_model(path)
    y, g = value_and_gradient(lambda x: model(x, training=False), expected["x"])
    np.testing.assert_allclose(y, expected["y"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g, expected["gradient"], rtol=1e-5, atol=1e-6)
    layer_types = {type(layer).__name__ for layer in model.layers}
    assert {spec.layer for spec in ka.activations.specs()} <= layer_types


def test_at_least_one_golden_file_is_committed():
    assert GOLDEN, "tests/golden/*.keras are missing: run tests/golden/make_golden.py and commit them"
