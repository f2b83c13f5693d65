"""Values and derivatives of every activation function against independent closed forms."""

import numpy as np
import pytest
import tensorflow as tf

import keras_activations as ka
from tests import references as ref

CASES = [(name, kwargs) for name, (_, _, cases) in ref.REFERENCES.items() for kwargs in cases]
KINKED = [(n, k) for n, k in CASES if ka.get_spec(n).grad_at_zero is not None]
FLOAT_DTYPES = [tf.float16, tf.bfloat16, tf.float32, tf.float64]


def case_id(case):
    name, kwargs = case
    return name + "".join(f"-{k}={v}" for k, v in kwargs.items())


def value_and_grad(name, x, kwargs, **extra):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ka.get(name)(x, **kwargs, **extra)
    return y, tape.gradient(y, x)


def test_every_registered_activation_has_an_independent_reference():
    assert sorted(ref.REFERENCES) == ka.available()


def test_registry_round_trip():
    for name in ka.available():
        fn = ka.get(name)
        assert ka.get(ka.serialize(fn)) is fn
        assert ka.deserialize(ka.serialize(fn)) is fn
        assert ka.get_spec(fn).name == name
    with pytest.raises(ValueError, match="Known keras_activations activations: abs_rectifier"):
        ka.get("swishy")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_values_float64_on_edge_grid(case):
    name, kwargs = case
    forward = ref.REFERENCES[name][0]
    y = ka.get(name)(tf.constant(ref.GRID), **kwargs).numpy()
    np.testing.assert_allclose(y, forward(ref.GRID, **kwargs), rtol=1e-13, atol=0, equal_nan=True)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_first_derivative_float64_matches_closed_form(case):
    name, kwargs = case
    derivative = ref.REFERENCES[name][1]
    finite = ref.GRID[np.isfinite(ref.GRID) & (ref.GRID != 0)]
    _, grad = value_and_grad(name, tf.constant(finite), kwargs)
    expected = derivative(finite, **kwargs)
    # Gradients computed from the output lose relative (not absolute) precision deep in saturation,
    # as TensorFlow's EluGrad does: 1 ulp of the saturation value.
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-12, atol=1e-15)
    # The spec's derivative (used by GradientMonitor) is the same function of the input.
    spec_derivative = ka.get_spec(name).derivative(tf.constant(finite), **kwargs)
    np.testing.assert_allclose(spec_derivative.numpy(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gradient_is_finite_for_every_finite_input(case):
    name, kwargs = case
    for dtype in FLOAT_DTYPES:
        x = tf.constant(ref.GRID[np.isfinite(ref.GRID)], dtype)
        x = tf.concat([x, tf.constant([float(dtype.max), float(dtype.min)], dtype)], 0) if name != "maxout" else x
        _, grad = value_and_grad(name, x, kwargs)
        assert np.all(np.isfinite(tf.cast(grad, tf.float64).numpy())), (name, dtype, grad)


@pytest.mark.parametrize("case", KINKED, ids=case_id)
def test_grad_at_zero_is_honoured(case):
    name, kwargs = case
    left, right, default = ref.kink(name, kwargs)
    zero = tf.constant([0.0, -0.0], tf.float64)
    for choice, expected in [("left", left), ("right", right), (0.5, 0.5), (-2, -2.0)]:
        _, grad = value_and_grad(name, zero, kwargs, grad_at_zero=choice)
        np.testing.assert_allclose(grad.numpy(), [expected, expected], rtol=1e-15)
        spec_derivative = ka.get_spec(name).derivative(zero, grad_at_zero=choice, **kwargs)
        np.testing.assert_allclose(spec_derivative.numpy(), [expected, expected], rtol=1e-15)
    _, grad = value_and_grad(name, zero, kwargs)
    np.testing.assert_allclose(grad.numpy(), [default, default], rtol=1e-15)


@pytest.mark.parametrize("name", [n for n in ka.available() if ka.get_spec(n).grad_at_zero is not None])
@pytest.mark.parametrize("bad", ["middle", None, float("nan"), True])
def test_unknown_grad_at_zero_is_a_clear_error(name, bad):
    kwargs = ref.REFERENCES[name][2][0]
    with pytest.raises(ValueError, match=rf"{name}: argument `grad_at_zero` must be 'left', 'right'"):
        ka.get(name)(tf.constant([0.0]), grad_at_zero=bad, **kwargs)


# Second derivatives where they exist (away from 0), f''(x).
SECOND = {
    "elu": lambda x: np.where(x > 0, 0.0, np.exp(x)),
    "selu": lambda x: np.where(x > 0, 0.0, ref.SELU_SCALE * ref.SELU_ALPHA * np.exp(x)),
    "celu": lambda x: np.where(x > 0, 0.0, np.exp(x / 0.5) / 0.5),
    "isrlu": lambda x: np.where(x >= 0, 0.0, -3 * x * (1 + x * x) ** -2.5),
    "pelu": lambda x: np.where(x >= 0, 0.0, (1.5 / 0.5**2) * np.exp(x / 0.5)),
    "leaky_relu": lambda x: np.zeros_like(x),
}
SECOND_KWARGS = {"celu": {"alpha": 0.5}, "pelu": {"a": 1.5, "b": 0.5}}


@pytest.mark.parametrize("name", sorted(SECOND))
def test_second_derivative_matches_closed_form(name):
    x = tf.constant([-5.0, -1.0, -0.3, -1e-3, 1e-3, 0.4, 2.0], tf.float64)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = ka.get(name)(x, **SECOND_KWARGS.get(name, {}))
        dy = inner.gradient(y, x)
    d2 = outer.gradient(dy, x)
    d2 = np.zeros(x.shape) if d2 is None else d2.numpy()
    np.testing.assert_allclose(d2, SECOND[name](x.numpy()), rtol=1e-10, atol=1e-14)


def test_pelu_parameter_gradients_match_closed_form():
    x = tf.constant([[-3.0, -0.5, 0.0, 0.7, 4.0], [-1e4, -1.0, 1e-7, 2.0, -2.0]], tf.float64)
    a = tf.Variable([1.5, 0.8, 1.0, 2.0, 0.3], dtype=tf.float64)
    b = tf.Variable(0.7, dtype=tf.float64)
    with tf.GradientTape() as tape:
        y = ka.pelu(x, a, b)
    da, db = tape.gradient(y, [a, b])
    xn, an, bn = x.numpy(), a.numpy(), b.numpy()
    pos = xn >= 0
    da_ref = np.where(pos, xn / bn, np.expm1(xn / bn)).sum(0)
    db_ref = np.where(pos, -an * xn / bn**2, -an * xn * np.exp(xn / bn) / bn**2).sum()
    np.testing.assert_allclose(da.numpy(), da_ref, rtol=1e-12)
    np.testing.assert_allclose(db.numpy(), db_ref, rtol=1e-10)


def test_prelu_alpha_gradient_is_summed_over_broadcast_axes():
    x = tf.constant(np.random.RandomState(0).randn(3, 4, 5))
    alpha = tf.Variable(np.full((1, 5), 0.2))
    with tf.GradientTape() as tape:
        y = ka.prelu(x, alpha)
    dalpha = tape.gradient(y, alpha).numpy()
    np.testing.assert_allclose(dalpha, np.minimum(x.numpy(), 0).sum((0, 1))[None], rtol=1e-12)
    assert dalpha.shape == (1, 5)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
def test_dtype_is_preserved_and_values_close(case, dtype):
    name, kwargs = case
    forward, derivative, _ = ref.REFERENCES[name]
    x = np.array([-3.0, -0.5, -1e-3, 0.25, 2.0])
    y, grad = value_and_grad(name, tf.constant(x, dtype), kwargs)
    assert y.dtype == dtype and grad.dtype == dtype
    rtol = {tf.float16: 2e-3, tf.bfloat16: 1.6e-2, tf.float32: 1e-6, tf.float64: 1e-13}[dtype]
    xq = tf.cast(tf.constant(x, dtype), tf.float64).numpy()  # the input as the dtype holds it
    np.testing.assert_allclose(tf.cast(y, tf.float64).numpy(), forward(xq, **kwargs), rtol=rtol, atol=rtol * 1e-3)
    # Backward passes that work from the output (as TensorFlow's EluGrad) are exact up to a few ulp
    # of the saturation value, an absolute error.
    eps = float(np.finfo(np.float16).eps) if dtype == tf.float16 else 2.0 ** {tf.bfloat16: -7, tf.float32: -23, tf.float64: -52}.get(dtype, -10)
    np.testing.assert_allclose(tf.cast(grad, tf.float64).numpy(), derivative(xq, **kwargs), rtol=rtol, atol=8 * eps)


def test_elu_is_exact_near_zero_where_graph_mode_tf_nn_elu_is_not():
    x = tf.constant([-1e-7, -1e-8, -1e-20], tf.float32)
    ours = tf.function(ka.elu)(x).numpy()
    np.testing.assert_allclose(ours, np.expm1(x.numpy().astype(np.float64)), rtol=1e-7)
    builtin = tf.function(tf.nn.elu)(x).numpy()
    # The built-in's graph-mode kernel computes exp(x) - 1 (tensorflow#116943); documented here so a
    # future TensorFlow that fixes it is noticed.
    assert abs(builtin[0] / -1e-7 - 1) > 0.1


@pytest.mark.parametrize("name,builtin,kwargs", [
    ("elu", tf.nn.elu, {}),
    ("selu", tf.nn.selu, {}),
    ("leaky_relu", lambda x: tf.nn.leaky_relu(x, 0.25), {"negative_slope": 0.25}),
    ("leaky_relu", tf.nn.relu, {"negative_slope": 0.0}),
    ("abs_rectifier", tf.abs, {}),
])
def test_defaults_equal_tensorflow_builtins_including_gradient_at_zero(name, builtin, kwargs):
    x = tf.constant([-4.0, -1.0, -0.1, 0.0, 0.1, 1.0, 4.0, np.inf, -np.inf, np.nan], tf.float64)
    y, grad = value_and_grad(name, x, kwargs)
    # Values against the XLA kernels (exact near 0); gradients, kink included, against the default
    # graph-mode kernels (XLA's SeluGrad returns scale*alpha at exactly 0, the graph kernel scale).
    yb = tf.function(builtin, jit_compile=True)(x)
    np.testing.assert_allclose(y.numpy(), yb.numpy(), rtol=1e-14, equal_nan=True)
    with tf.GradientTape() as tape:
        tape.watch(x)
        yg = tf.function(builtin)(x)
    gb = tape.gradient(yg, x).numpy()
    finite = np.isfinite(x.numpy())
    np.testing.assert_allclose(grad.numpy()[finite], gb[finite], rtol=1e-14)


def test_prelu_default_equals_keras_prelu_layer_including_zero():
    import keras

    x = tf.constant([[-2.0, 0.0, 3.0, -0.5]])
    layer = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.3))
    layer.build(x.shape)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        yk = layer(x)
        y = ka.prelu(x, layer.alpha)
    np.testing.assert_allclose(y.numpy(), yk.numpy())
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), tape.gradient(yk, x).numpy())
    np.testing.assert_allclose(tape.gradient(y, layer.alpha).numpy(), tape.gradient(yk, layer.alpha).numpy())


def test_celu_large_input_small_alpha_has_finite_gradient():
    y, grad = value_and_grad("celu", tf.constant([1e4, -1e4, 50.0]), {"alpha": 0.01})
    np.testing.assert_array_equal(grad.numpy(), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(y.numpy(), [1e4, -0.01, 50.0], rtol=1e-7)


@pytest.mark.parametrize("name", ka.available())
@pytest.mark.parametrize("dtype", [tf.int32, tf.complex64, tf.bool])
def test_non_float_input_is_a_type_error(name, dtype):
    kwargs = ref.REFERENCES[name][2][0]
    with pytest.raises(TypeError, match=rf"{name}: argument `x` must be a floating-point tensor"):
        ka.get(name)(tf.zeros([2], dtype), **kwargs)


@pytest.mark.parametrize("call,message", [
    (lambda: ka.celu(tf.ones(2), alpha=0.0), r"celu: argument `alpha` must be a finite real number > 0, got 0.0"),
    (lambda: ka.celu(tf.ones(2), alpha=-1), r"celu: argument `alpha` must be .* > 0"),
    (lambda: ka.elu(tf.ones(2), alpha=-0.5), r"elu: argument `alpha` must be .* >= 0"),
    (lambda: ka.isrlu(tf.ones(2), alpha=float("inf")), r"isrlu: argument `alpha`"),
    (lambda: ka.rrelu(tf.ones(2), lower=0.5, upper=0.1), r"rrelu: argument `lower` must be <= `upper`"),
    (lambda: ka.rrelu(tf.ones(2), lower=-0.1), r"rrelu: argument `lower` must be .* >= 0"),
    (lambda: ka.maxout(tf.ones([2, 5]), num_units=2), r"maxout: the size of axis 1 \(5\) must be divisible by `num_units`=2"),
    (lambda: ka.maxout(tf.ones([2, 4]), num_units=0), r"maxout: argument `num_units` must be a positive integer"),
    (lambda: ka.pelu(tf.ones(2), a=-1.0), r"pelu: argument `a` must be > 0"),
    (lambda: ka.pelu(tf.ones(2), b=0.0), r"pelu: argument `b` must be > 0"),
    (lambda: ka.leaky_relu(tf.ones(2), negative_slope="0.1"), r"leaky_relu: argument `negative_slope`"),
])
def test_bad_arguments_get_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_maxout_ties_send_the_whole_gradient_to_the_first_piece():
    x = tf.constant([[2.0, 2.0, 1.0, 5.0, 5.0, 5.0]])
    y, grad = value_and_grad("maxout", x, {"num_units": 2})
    np.testing.assert_array_equal(y.numpy(), [[2.0, 5.0]])
    np.testing.assert_array_equal(grad.numpy(), [[1, 0, 0, 1, 0, 0]])
    np.testing.assert_array_equal(ka.activations.maxout_winner(x, 2).numpy(), [[0, 0]])


def test_maxout_groups_consecutive_features_along_any_axis():
    x = np.random.RandomState(1).randn(2, 6, 3, 3)
    y = ka.maxout(tf.constant(x), num_units=3, axis=1).numpy()
    np.testing.assert_array_equal(y, x.reshape(2, 3, 2, 3, 3).max(2))
    y_last = ka.maxout(tf.constant(x), num_units=1, axis=-1).numpy()
    np.testing.assert_array_equal(y_last, x.max(-1, keepdims=True))


def test_maxout_keeps_static_feature_size_with_unknown_batch():
    shapes = []

    @tf.function(input_signature=[tf.TensorSpec([None, None, 12], tf.float32)])
    def f(x):
        y = ka.maxout(x, num_units=4)
        shapes.append(y.shape.as_list())
        return y

    assert f(tf.ones([3, 2, 12])).shape == (3, 2, 4)
    assert shapes == [[None, None, 4]]


def test_rrelu_training_draws_slopes_in_bounds_and_gradient_is_the_slope():
    x = -tf.random.uniform([20000], 0.1, 2.0, seed=1)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ka.rrelu(x, lower=0.1, upper=0.3, training=True, seed=7)
    slopes = (y / x).numpy()
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3
    assert abs(slopes.mean() - 0.2) < 0.003 and abs(slopes.std() - 0.2 / np.sqrt(12)) < 0.003
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), slopes, rtol=1e-6)
    again = ka.rrelu(x, lower=0.1, upper=0.3, training=True, seed=7)
    np.testing.assert_array_equal(again.numpy(), y.numpy())
    positive = ka.rrelu(tf.constant([0.5, 3.0]), training=True, seed=1)
    np.testing.assert_array_equal(positive.numpy(), [0.5, 3.0])


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_xla_equals_graph_mode_with_unknown_batch(case):
    name, kwargs = case
    x = tf.constant(np.random.RandomState(2).randn(7, 6) * 3)

    def step(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = ka.get(name)(inputs, **kwargs)
        return y, tape.gradient(y, inputs)

    signature = [tf.TensorSpec([None, 6], tf.float64)]
    graph = tf.function(step, input_signature=signature)(x)
    xla = tf.function(step, input_signature=signature, jit_compile=True)(x)
    eager = step(x)
    # XLA may fold the constants of an inlined body differently (x / alpha -> x * (1 / alpha)), and
    # a gradient computed from the output deep in saturation (celu(alpha=0.01) at x = -0.17: y / alpha
    # + 1 = 5e-8) keeps the absolute error of its terms, 1 ulp of 1.
    ulp = np.finfo(np.float64).eps
    for a, b, c in zip(graph, xla, eager):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-15, atol=ulp)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_expm1_nonpositive_is_expm1_below_zero_and_its_derivative_exp(dtype, jit):
    from keras_activations.activations._math import expm1_nonpositive

    x = np.array([0.0, -0.0, -1e-30, -1e-7, -1e-3, -0.5, -1.0, -20.0, -1e4, -np.inf, np.nan,
                  1e-7, 1.0, 20.0, 1e4, np.inf])

    @tf.function(jit_compile=jit)
    def value_and_derivative(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = expm1_nonpositive(t)
        return y, tape.gradient(y, t)

    xq = tf.constant(x, dtype)
    y, dy = (tf.cast(v, tf.float64).numpy() for v in value_and_derivative(xq))
    x64 = tf.cast(xq, tf.float64).numpy()
    eps = {tf.float16: 2.0 ** -10, tf.bfloat16: 2.0 ** -7, tf.float32: 2.0 ** -23, tf.float64: 2.0 ** -52}[dtype]
    with np.errstate(all="ignore"):
        want = np.where(x64 > 0, 0.0, np.expm1(x64))
        want_derivative = np.where(x64 > 0, 0.0, np.exp(x64))
    tiny = (x64 < 0) & (x64 > -1e-3)  # relative accuracy where exp(x) - 1 would lose it
    np.testing.assert_allclose(y, want, rtol=4 * eps, atol=0, equal_nan=True)
    assert np.all(np.abs(y[tiny] / want[tiny] - 1) <= 4 * eps)
    finite = np.isfinite(x64)
    assert np.all(np.isfinite(dy[finite]))
    # Autodiff goes through tanh' = 1 - t^2, 0 once t rounds to -1 (x < -17 in float32): an absolute
    # error below 1 ulp of the derivative's scale, 1 (the activations' own gradients are hand-written).
    np.testing.assert_allclose(dy[finite], want_derivative[finite], rtol=8 * eps, atol=eps)
