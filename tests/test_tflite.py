"""Every activation and layer converts to TFLite and keeps its float32 accuracy there (expm1 near 0)."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_activations as ka
from tests import references as ref
from tests.test_activations import CASES, case_id
from tests.test_layers import LAYER_REFERENCES, LAYERS

pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")

# The points, -0.5, and +-inf and NaN (Maxout(num_units=3) gets three groups of five).
GRID = np.array([0.0, 1e-7, -1e-7, 1e-3, -1e-3, 1.0, -1.0, 20.0, -20.0, 1e4, -1e4, -0.5,
                 np.inf, -np.inf, np.nan], np.float32)
# The float32 tolerances of the TensorFlow tests (test_dtype_is_preserved_and_values_close).
RTOL, ATOL = 1e-6, 1e-9


def every_activation_model():
    """One model, one output per activation case (as an Activation layer) and per layer of LAYERS."""
    inputs = keras.Input((GRID.size,), name="x")
    outputs, expected = {}, {}
    x64 = GRID.astype(np.float64)
    for name, kwargs in CASES:
        key = "fn_" + case_id((name, kwargs)).replace("=", "_").replace(".", "p").replace("-", "_")
        fn = functools.partial(ka.get(name), **kwargs)
        outputs[key] = keras.layers.Activation(fn, name=key)(inputs)
        expected[key] = ref.REFERENCES[name][0](x64[None], **kwargs)
    for name in sorted(LAYERS):
        key = "layer_" + name
        outputs[key] = LAYERS[name]()(inputs)
        expected[key] = LAYER_REFERENCES[name](x64[None])
    return keras.Model(inputs, outputs), expected


@pytest.fixture(scope="module")
def model_and_expected():
    return every_activation_model()


def _converter(model, source, tmp_path):
    if source == "keras_model":
        return tf.lite.TFLiteConverter.from_keras_model(model)
    model.export(str(tmp_path / "saved"), verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved"))


@pytest.mark.parametrize("source", ["keras_model", "saved_model"])
def test_tflite_outputs_match_float64_closed_forms(model_and_expected, source, tmp_path):
    model, expected = model_and_expected
    converter = _converter(model, source, tmp_path)
    # TFLite's built-in ops only (the default, said here): conversion fails on any op outside them, a
    # Flex (TensorFlow) op or a custom op.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    runner = interpreter.get_signature_runner()
    (input_name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
    results = runner(**{input_name: GRID[None]})
    assert sorted(results) == sorted(expected)
    for key, want in expected.items():
        got = results[key]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=RTOL, atol=ATOL, equal_nan=True,
                                   err_msg=key)
    # The TFLite model computes what Keras computes, within a few ulp (TFLite's tanh is not XLA's).
    keras_results = model(GRID[None])
    for key in expected:
        np.testing.assert_allclose(results[key], keras_results[key].numpy(), rtol=RTOL, atol=1e-12,
                                   equal_nan=True, err_msg=key)

