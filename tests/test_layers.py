"""The layers: config, shapes, masks, mixed precision, convolutions, save/load and export."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_activations as ka
from tests import references as ref

# One instance per layer class, with non-default arguments where there are any.
LAYERS = {
    "ELU": lambda: ka.ELU(alpha=0.5, grad_at_zero="left"),
    "SELU": lambda: ka.SELU(grad_at_zero=0.25),
    "CELU": lambda: ka.CELU(alpha=0.7),
    "PELU": lambda: ka.PELU(a_initializer=1.3, b_initializer=0.6),
    "ISRLU": lambda: ka.ISRLU(alpha=2.0),
    "LeakyReLU": lambda: ka.LeakyReLU(negative_slope=0.2, grad_at_zero="right"),
    "AbsRectifier": lambda: ka.AbsRectifier(grad_at_zero=0.5),
    "PReLU": lambda: ka.PReLU(alpha_initializer=0.3),
    "RReLU": lambda: ka.RReLU(lower=0.1, upper=0.2, seed=3),
    "Maxout": lambda: ka.Maxout(num_units=3),
}
FUNCTIONS_AS_DENSE_ACTIVATION = ["elu", "selu", "celu", "isrlu", "leaky_relu", "abs_rectifier", "rrelu"]


def test_every_registered_activation_has_a_tested_layer():
    assert sorted(spec.layer for spec in ka.activations.specs()) == sorted(LAYERS)


# The float64 closed form of each layer of LAYERS, in inference.
LAYER_REFERENCES = {
    "ELU": lambda x: ref.elu(x, 0.5), "SELU": ref.selu, "CELU": lambda x: ref.celu(x, 0.7),
    "PELU": lambda x: ref.pelu(x, 1.3, 0.6), "ISRLU": lambda x: ref.isrlu(x, 2.0),
    "LeakyReLU": lambda x: ref.leaky_relu(x, 0.2), "AbsRectifier": ref.abs_rectifier,
    "PReLU": lambda x: ref.leaky_relu(x, 0.3), "RReLU": lambda x: ref.leaky_relu(x, 0.15),
    "Maxout": lambda x: ref.maxout(x, 3),
}


def test_layer_forward_matches_reference():
    x = np.linspace(-4, 4, 24).reshape(2, 12)
    for name, reference in LAYER_REFERENCES.items():
        layer = LAYERS[name]()
        y = layer(tf.constant(x, tf.float32)).numpy()
        np.testing.assert_allclose(y, reference(x), rtol=1e-6, atol=1e-7, err_msg=name)
        assert layer.compute_output_shape((None, 12)) == ((None, 3) if name == "Maxout" else (None, 12))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_get_config_round_trip_is_complete(name):
    layer = LAYERS[name]()
    layer.build((None, 12))
    clone = type(layer).from_config(layer.get_config())
    clone.build((None, 12))
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == layer.get_config()
    x = tf.random.normal([5, 12], seed=1)
    np.testing.assert_array_equal(clone(x).numpy(), layer(x).numpy())


@pytest.mark.parametrize("name", sorted(set(LAYERS) - {"Maxout"}))
def test_layer_derivative_matches_autodiff(name):
    layer = LAYERS[name]()
    x = tf.constant(np.linspace(-3, 3, 12).reshape(1, 12), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=False)
    # The backward pass works from the output: exact up to a few ulp of the saturation value.
    np.testing.assert_allclose(layer.derivative(x).numpy(), tape.gradient(y, x).numpy(), rtol=1e-6, atol=1e-6)


def test_maxout_winning_piece():
    layer = ka.Maxout(num_units=2)
    x = tf.constant([[0.0, 4.0, 1.0, 7.0, 7.0, -1.0]])
    np.testing.assert_array_equal(layer.winning_piece(x).numpy(), [[1, 0]])
    assert layer(x).shape == (1, 2) and layer.pieces == 3


def test_masks_pass_through():
    inputs = keras.Input((5, 6))
    masked = keras.layers.Masking(0.0)(inputs)
    for name in sorted(LAYERS):
        layer = LAYERS[name]()
        out = layer(masked)
        assert layer.supports_masking
        data = np.ones((2, 5, 6), "float32")
        data[:, 3] = 0
        mask = layer.compute_mask(tf.constant(data), tf.constant(data[..., 0] != 0))
        np.testing.assert_array_equal(mask.numpy(), data[..., 0] != 0)
        assert out.shape[-1] == (3 if name == "Maxout" else 6)


def _bad_argument_cases():
    import inspect

    bad = [dict(alpha=-1.0), dict(negative_slope=float("nan")), dict(grad_at_zero="up"),
           dict(lower=0.5, upper=0.1)]
    for name in sorted(LAYERS):
        accepted = inspect.signature(type(LAYERS[name]()).__init__).parameters
        for kwargs in bad:
            if set(kwargs) <= set(accepted):
                yield name, kwargs


@pytest.mark.parametrize("name,bad", list(_bad_argument_cases()))
def test_bad_layer_arguments_fail_at_construction(name, bad):
    with pytest.raises(ValueError, match=rf"{name}: argument `{list(bad)[0]}`"):
        type(LAYERS[name]())(**bad)


def test_maxout_and_prelu_errors_at_construction_and_build():
    with pytest.raises(ValueError, match=r"Maxout: argument `num_units` must be a positive integer, got 0"):
        ka.Maxout(0)
    with pytest.raises(ValueError, match=r"Maxout: the input size along axis -1 \(10\) must be known and divisible"):
        ka.Maxout(3).build((None, 10))
    with pytest.raises(ValueError, match=r"PReLU: argument `shared_axes` must not contain 0"):
        ka.PReLU(shared_axes=[0])
    with pytest.raises(ValueError, match=r"PReLU: axis 1 of the input shape \(None, None, 3\) is unknown"):
        ka.PReLU().build((None, None, 3))


def test_prelu_with_unknown_spatial_sizes_and_shared_axes():
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    prelu = ka.PReLU(shared_axes=[1, 2])
    model = keras.Model(inputs, prelu(features))
    assert prelu.alpha.shape == (1, 1, 4)
    np.testing.assert_allclose(prelu.alpha.numpy(), 0.25)
    for size in [(5, 7), (9, 4)]:
        assert model(np.random.randn(2, *size, 3).astype("float32")).shape == (2, *size, 4)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_conv2d_models_in_both_data_formats_train(data_format):
    channel_axis = -1 if data_format == "channels_last" else 1
    shape = (8, 8, 2) if data_format == "channels_last" else (2, 8, 8)
    spatial = [1, 2] if data_format == "channels_last" else [2, 3]
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    h = keras.layers.Conv2D(6, 3, padding="same", data_format=data_format)(inputs)
    h = ka.PReLU(shared_axes=spatial)(h)
    h = ka.Maxout(num_units=3, axis=channel_axis)(h)
    h = keras.layers.Conv2D(4, 3, padding="same", data_format=data_format)(h)
    h = ka.PELU(shared_axes=spatial)(h)
    h = ka.ELU(alpha=0.5)(h)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D(data_format=data_format)(h))
    model = keras.Model(inputs, outputs)
    assert model.layers[3].output.shape[channel_axis] == 3
    # TensorFlow's CPU kernels cannot back-propagate through an NCHW convolution
    # ("Conv2DCustomBackpropInputOp only supports NHWC"); XLA can.
    model.compile("adam", "mse", jit_compile=data_format == "channels_first")
    x = np.random.RandomState(0).rand(32, *shape).astype("float32")
    y = x.mean(axis=(1, 2, 3))[:, None]
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_mixed_float16_policy_computes_in_half_keeps_variables_float32():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        h = keras.layers.Dense(8)(inputs)
        layers = [ka.PReLU(), ka.PELU(), ka.ELU(alpha=0.5), ka.RReLU(seed=1), ka.Maxout(4)]
        for layer in layers:
            h = layer(h)
        outputs = keras.layers.Dense(1, dtype="float32")(h)
        model = keras.Model(inputs, outputs)
        for layer in layers:
            assert layer.compute_dtype == "float16"
            assert all(w.dtype == "float32" for w in layer.weights if w.trainable)
        model.compile(keras.optimizers.SGD(0.01), "mse")
        x = np.random.RandomState(0).randn(64, 6).astype("float32")
        before = [w.numpy().copy() for w in layers[0].weights + layers[1].weights]
        model.fit(x, x[:, :1], epochs=1, batch_size=16, verbose=0)
        after = [w.numpy() for w in layers[0].weights + layers[1].weights]
        assert all(np.all(np.isfinite(a)) and not np.array_equal(a, b) for a, b in zip(after, before))
        assert model.predict(x, verbose=0).dtype == np.float32
        with tf.GradientTape() as tape:
            y = layers[0](tf.constant(x[:, :1] * np.ones((1, 8), "float32")))
        assert y.dtype == tf.float16
        assert tape.gradient(y, layers[0].alpha).dtype == tf.float32
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_rrelu_layer_random_in_training_fixed_in_inference_and_seedable():
    x = tf.constant(-np.ones((4, 100), "float32"))
    a, b = ka.RReLU(seed=5), ka.RReLU(seed=5)
    train_a, train_b = a(x, training=True).numpy(), b(x, training=True).numpy()
    np.testing.assert_array_equal(train_a, train_b)
    assert len(np.unique(train_a)) > 100 and train_a.max() <= -1 / 8 and train_a.min() >= -1 / 3
    assert not np.array_equal(a(x, training=True).numpy(), train_a)  # new slopes each step
    np.testing.assert_allclose(a(x, training=False).numpy(), -(1 / 8 + 1 / 3) / 2, rtol=1e-6)


def test_pelu_parameters_stay_positive():
    layer = ka.PELU()
    model = keras.Sequential([keras.Input((3,)), layer])
    model.compile(keras.optimizers.SGD(100.0), "mse")
    x = -np.ones((8, 3), "float32")
    model.fit(x, np.full((8, 3), 5.0, "float32"), epochs=2, verbose=0)
    assert layer.a.numpy().min() >= 0.1 and layer.b.numpy().min() >= 0.1


def test_fit_with_jit_compile_equals_graph_mode():
    def train(jit):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([
            keras.Input((5,)), keras.layers.Dense(12, activation=ka.celu), ka.PReLU(),
            keras.layers.Dense(12), ka.PELU(), ka.Maxout(4), keras.layers.Dense(6, activation=ka.selu),
            ka.ELU(alpha=0.3), keras.layers.Dense(1),
        ])
        model.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=jit)
        x = np.random.RandomState(0).randn(64, 5).astype("float32")
        model.fit(x, np.sin(x[:, :1]), epochs=2, batch_size=16, verbose=0, shuffle=False)
        return model.get_weights()

    for a, b in zip(train(False), train(True)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
