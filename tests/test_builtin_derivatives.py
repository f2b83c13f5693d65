"""Closed-form derivatives of Keras's built-in activations (what
GradientMonitor uses to find dead and saturated units) against TensorFlow's
own autodiff, and their output forms against their input forms."""

import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import keras
import tensorflow as tf

from keras_activations import builtin_derivatives as bd

# Away from every built-in's kinks (0, +-1, +-3, 6), where autodiff and the
# closed form may pick different one-sided derivatives.
POINTS = np.array(
    [-40.0, -7.3, -3.1, -2.2, -0.9, -0.3, -1e-3, 2e-3, 0.37, 0.8, 1.7, 2.9, 5.1, 7.7, 40.0]
)
EDGES = np.array(
    [0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, 1.0, -1.0, 1e4, -1e4, np.inf, -np.inf],
    np.float32,
)


def _autodiff(fn, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x).numpy()


@pytest.mark.parametrize("name", bd.SUPPORTED_ACTIVATIONS)
def test_derivative_equals_autodiff(name):
    try:
        fn = keras.activations.get(name)
    except (ValueError, TypeError):
        pytest.skip(f"keras has no activation {name!r}")
    # By the function object, as GradientMonitor resolves a layer's
    # activation (the name "leaky_relu" alone means this package's).
    resolved = bd.resolve_function(fn)
    assert resolved is not None
    expected = _autodiff(fn, POINTS)
    got = resolved.fn(tf.constant(POINTS)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    "layer",
    [
        keras.layers.ReLU(),
        keras.layers.ReLU(negative_slope=0.1),
        keras.layers.ReLU(threshold=0.5),
        keras.layers.ReLU(max_value=6.0),
        keras.layers.LeakyReLU(negative_slope=0.3),
    ],
    ids=["relu", "relu_slope", "relu_threshold", "relu_capped", "leaky"],
)
def test_layer_derivative_equals_autodiff(layer):
    resolved = bd.resolve_layer(layer)
    points = POINTS[np.abs(POINTS - 0.5) > 0.1].astype(np.float32)  # threshold
    expected = _autodiff(layer, points)
    np.testing.assert_allclose(resolved.fn(tf.constant(points)).numpy(), expected, rtol=1e-6)


def test_elu_layer_derivative_equals_closed_form():
    # Against float64 numpy, not autodiff: TensorFlow's graph-mode ELU
    # gradient is 0 at x=-40 and 3e-5 off at x=-7.3 in float32.
    resolved = bd.resolve_layer(keras.layers.ELU(alpha=0.5))
    expected = np.where(POINTS > 0, 1.0, 0.5 * np.exp(np.minimum(POINTS, 0)))
    np.testing.assert_allclose(resolved.fn(tf.constant(POINTS)).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "source",
    ["relu", "leaky_relu", "sigmoid", "tanh", "linear", "layer_relu", "layer_leaky", "layer_relu_slope"],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_output_form_equals_input_form_at_the_edges(source, dtype):
    if source.startswith("layer_"):
        layer = {
            "layer_relu": keras.layers.ReLU(),
            "layer_leaky": keras.layers.LeakyReLU(negative_slope=0.3),
            "layer_relu_slope": keras.layers.ReLU(negative_slope=0.1),
        }[source]
        resolved, forward = bd.resolve_layer(layer), layer
    else:
        forward = keras.activations.get(source)
        resolved = bd.resolve_function(forward)
    assert resolved.of_output is not None
    x = tf.constant(np.concatenate([EDGES, POINTS.astype(np.float32)]).astype(dtype))
    y = forward(x)
    x = tf.cast(x, y.dtype)  # a float32 layer computes in float32
    np.testing.assert_array_equal(resolved.of_output(y).numpy(), resolved.fn(x).numpy())


def test_no_output_form_where_the_output_does_not_determine_the_derivative():
    # A threshold, a cap, or an output that is not monotonic in the input.
    for layer in (
        keras.layers.ReLU(threshold=0.5),
        keras.layers.ReLU(max_value=6.0),
    ):
        assert bd.resolve_layer(layer).of_output is None
    for name in ("gelu", "silu", "mish"):
        assert bd.resolve_function(name).of_output is None


@pytest.mark.parametrize("source", ["elu", "selu", "softplus", "relu6", "exponential", "layer_elu"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rounded_output_forms_are_within_a_rounding_of_the_input_form(source, dtype):
    # ELU and SELU from their output: y + alpha rounds alpha * e^x, so the
    # derivative is off by at most a rounding of alpha (0 below x = -17 in
    # float32); softplus from 1 - e^-y: a few roundings.
    if source == "layer_elu":
        forward = keras.layers.ELU(alpha=0.5)
        resolved = bd.resolve_layer(forward)
        alpha = 0.5
    else:
        forward = keras.activations.get(source)
        resolved = bd.resolve_function(forward)
        alpha = 1.7581 if source == "selu" else 1.0
    x = tf.constant(np.concatenate([EDGES[np.abs(EDGES) < 80], POINTS.astype(np.float32)]).astype(dtype))
    y = forward(x)
    eps = np.finfo(np.asarray(y).dtype).eps  # a float32 layer computes in float32
    got = resolved.of_output(y).numpy()
    want = resolved.fn(tf.cast(x, y.dtype)).numpy()
    np.testing.assert_allclose(got, want, rtol=8 * eps, atol=2 * alpha * eps)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.5])
@pytest.mark.parametrize("saturation_tolerance", [1e-3, 0.1, 2.0])
def test_step_form_figures_equal_the_generic_figures(slope, saturation_tolerance):
    # GradientMonitor's shortcut for a derivative that is a step in the
    # output's sign must give what the elementwise derivative gives.
    import types

    from keras_activations.monitor import state

    rng = np.random.RandomState(0)
    x = rng.randn(64, 10).astype(np.float32)
    x[:, 3] = -np.abs(x[:, 3])  # a unit that never fires
    x[5, 7] = 0.0  # relu'(0) = slope
    x[6, 2] = np.nan  # neither fires nor saturates
    y = tf.constant(np.where(x > 0, x, slope * x).astype(np.float32))
    form = bd.resolve_layer(keras.layers.LeakyReLU(negative_slope=slope)).of_output
    assert isinstance(form, bd.StepOfOutput)

    def figures(of_output):
        site = types.SimpleNamespace(pieces=None, of_output=of_output, derivative=None)
        fired, saturated = state._site_step(site, None, y, [0], 0.0, saturation_tolerance)
        return np.asarray(fired), float(saturated)

    fast, generic = figures(form), figures(lambda u: form(u))
    np.testing.assert_array_equal(fast[0], generic[0])
    assert fast[1] == generic[1]
    d = np.where(x > 0, 1.0, slope)
    assert fast[1] == np.sum(d[~np.isnan(x)] < saturation_tolerance)
    np.testing.assert_array_equal(fast[0], np.any(np.where(np.isnan(x), 0, d) > 0, axis=0))



def _tends_to_zero(derivative):
    """Whether |f'| tends to 0 without being 0 on a region, read from the
    derivative (float64): on some side, non-zero at 10 and at least halved
    at 100; never exactly 0 at the sample points (|x| <= 10: no underflow)."""
    ten, hundred = (np.abs(derivative(tf.constant([-t, t], tf.float64)).numpy()) for t in (10.0, 100.0))
    near = derivative(tf.constant(POINTS[np.abs(POINTS) <= 10], tf.float64)).numpy()
    return bool(np.any((ten > 0) & (hundred < ten / 2)) and np.all(near != 0))


@pytest.mark.parametrize("name", bd.SUPPORTED_ACTIVATIONS)
def test_saturates_says_whether_the_derivative_tends_to_zero(name):
    # `saturates` names the share of tiny derivatives: `saturation` for
    # sigmoid, tanh, the ELU family...; `inactive_fraction` for rectifiers.
    resolved = bd.resolve_function(name)
    assert resolved.saturates == _tends_to_zero(resolved.fn), name


def test_saturates_of_this_packages_activations_and_keras_layers():
    from keras_activations.activations import registry

    params = {"prelu": {"alpha": 0.25}, "pelu": {}, "rrelu": {}}
    for spec in registry.specs():
        if spec.elementwise:
            derivative = functools.partial(spec.derivative, **params.get(spec.name, {}))
            assert spec.saturates == _tends_to_zero(derivative), spec.name
    assert not bd.resolve_layer(keras.layers.ReLU()).saturates
    assert not bd.resolve_layer(keras.layers.PReLU()).saturates
    assert not bd.resolve_layer(keras.layers.LeakyReLU()).saturates
    assert bd.resolve_layer(keras.layers.ELU()).saturates
    assert not bd.resolve_layer(keras.layers.ELU(alpha=0.0)).saturates  # a ReLU
