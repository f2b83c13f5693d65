"""The monitor's compiled kernels (`monitor/native.py`, `monitor/kernels.cc`):
their figures against independent NumPy references and TensorFlow's ops,
at the edges; the records they give against those of TensorFlow's ops;
their build cache; and the fallback to TensorFlow's ops when they can't be
built.

Where a C++ compiler is found, the kernels must build and load (these tests
fail otherwise); without one, the tests that need them are skipped.
"""

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import keras
import tensorflow as tf

from keras_activations import GradientMonitor
from keras_activations.monitor import accumulators
from keras_activations.monitor import native

F32_MAX = np.finfo(np.float32).max


def _required(op):
    if native._compiler() is None:
        pytest.skip("no C++ compiler: the monitor uses TensorFlow's ops")
    assert op is not None, native.reason
    return op


@pytest.fixture(scope="module")
def kernel():
    return _required(native.histograms_op())


@pytest.fixture(scope="module")
def counts_op():
    return _required(native.positive_counts_op())


def _reference(x, bins):
    """NumPy, in float64: the finite values' [min, max] (widened like the
    monitor when they are equal) and the bucket counts of
    tf.histogram_fixed_width over it."""
    x = np.asarray(x, np.float32).ravel()
    finite = x[np.isfinite(x)]
    lo = np.float32(finite.min()) if finite.size else np.float32(0.0)
    hi = np.float32(finite.max()) if finite.size else np.float32(0.0)
    if not hi > lo:
        hi = np.float32(lo + np.float32(max(abs(lo), 1.0)) * np.float32(1e-3))
    scaled = (finite.astype(np.float64) - lo) / (np.float64(hi) - np.float64(lo)) * bins
    index = np.clip(np.floor(scaled), 0, bins - 1).astype(np.int64)
    return np.bincount(index, minlength=bins).astype(np.float64), np.array([lo, hi]), scaled


def _near_edges(scaled, bins):
    """How many values lie within float32 rounding of an inner edge."""
    inner = (scaled > 0.5) & (scaled < bins - 0.5)
    return int(np.sum(inner & (np.abs(scaled - np.round(scaled)) < 1e-5 * bins)))


def _check(kernel, xs, bins):
    counts, lohi = kernel([tf.constant(np.asarray(x, np.float32)) for x in xs], bins=bins)
    assert counts.shape == (len(xs), bins) and counts.dtype == tf.float64
    assert lohi.shape == (len(xs), 2) and lohi.dtype == tf.float32
    for k, x in enumerate(xs):
        expected, edges, scaled = _reference(x, bins)
        np.testing.assert_array_equal(lohi[k].numpy(), edges)
        assert counts[k].numpy().sum() == expected.sum()
        # A value within a rounding of an inner edge may be in either bucket.
        assert np.abs(counts[k].numpy() - expected).sum() <= 2 * _near_edges(scaled, bins)


def test_counts_equal_numpy_on_random_tensors(kernel):
    rng = np.random.RandomState(0)
    # Sizes around the kernel's chunk (2048) and 8-way unrolling, shapes of
    # any rank, ranges of very different scales, one-sided (ReLU) outputs.
    xs = [
        rng.randn(2048 * 3 + 5) * 1e-3,
        rng.randn(64, 33),
        np.maximum(rng.randn(7, 5, 3, 2), 0.0),
        rng.rand(2047) * 1e6 - 3e5,
        rng.randn(1),
        rng.randn(9) * 1e-30,
    ]
    for bins in (1, 2, 30, 257):
        _check(kernel, xs, bins)


def test_counts_equal_tensorflow_histogram_fixed_width(kernel):
    rng = np.random.RandomState(1)
    x = (rng.randn(50_000) * 0.02).astype(np.float32)
    lo, hi = x.min(), x.max()
    expected = tf.histogram_fixed_width(x, [lo, hi], nbins=30).numpy()
    counts, lohi = kernel([tf.constant(x)], bins=30)
    np.testing.assert_array_equal(lohi[0].numpy(), [lo, hi])
    _, _, scaled = _reference(x, 30)
    assert np.abs(counts[0].numpy() - expected).sum() <= 2 * _near_edges(scaled, 30)


def test_non_finite_values_are_left_out(kernel):
    x = np.array([1.0, np.nan, np.inf, -np.inf, 2.0, 3.0, np.nan])
    counts, lohi = kernel([tf.constant(x, tf.float32)], bins=2)
    np.testing.assert_array_equal(lohi[0].numpy(), [1.0, 3.0])
    np.testing.assert_array_equal(counts[0].numpy(), [1.0, 2.0])  # 3 is in the last
    _check(kernel, [x], 3)


def test_no_finite_value_gives_empty_counts_over_0_to_1e_3(kernel):
    xs = [[np.nan], [np.inf, -np.inf] * 3000, np.zeros([0, 4])]
    counts, lohi = kernel([tf.constant(np.asarray(x, np.float32)) for x in xs], bins=4)
    np.testing.assert_array_equal(counts.numpy(), np.zeros([3, 4]))
    np.testing.assert_array_equal(lohi.numpy(), np.tile(np.float32([0.0, 1e-3]), [3, 1]))


def test_constant_tensor_is_one_bucket_right_of_the_value(kernel):
    xs = [np.full(100, 5.0), np.full(3, -0.25), np.zeros(17)]
    counts, lohi = kernel([tf.constant(np.asarray(x, np.float32)) for x in xs], bins=10)
    np.testing.assert_array_equal(counts.numpy()[:, 0], [100, 3, 17])
    assert counts.numpy()[:, 1:].sum() == 0
    np.testing.assert_allclose(lohi.numpy()[:, 1] - lohi.numpy()[:, 0], [5e-3, 1e-3, 1e-3], rtol=1e-3)


def test_extreme_ranges(kernel):
    # The largest finite floats are values, not sentinels; a range near the
    # smallest normal floats (a scale too large for a float) still puts its
    # top value in the top bucket.
    xs = [
        [F32_MAX, -F32_MAX, 0.0],
        [F32_MAX, np.nan],
        [1e-37, 2e-37, 1.5e-37],
        [-F32_MAX, np.inf],
    ]
    counts, lohi = kernel([tf.constant(np.asarray(x, np.float32)) for x in xs], bins=4)
    np.testing.assert_array_equal(lohi[0].numpy(), [-F32_MAX, F32_MAX])
    np.testing.assert_array_equal(counts[0].numpy(), [1, 0, 1, 1])  # 0 is the middle
    assert lohi[1, 0] == F32_MAX and counts[1].numpy().sum() == 1
    np.testing.assert_array_equal(counts[2].numpy(), [1, 0, 1, 1])
    assert lohi[3, 0] == -F32_MAX and counts[3, 0] == 1


def _op_types(fn):
    """The op types of `fn`'s graph and of its functions (cond branches)."""
    graph = tf.function(fn).get_concrete_function().graph.as_graph_def()
    types = {node.op for node in graph.node}
    for function in graph.library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_monitor_uses_the_kernel_on_cpu_and_not_under_xla(kernel):
    xs = [tf.ones([3, 2]), tf.zeros([4])]

    def ops(use_segment_sum):
        return _op_types(lambda: accumulators.histograms(xs, 5, use_segment_sum, tf.constant(True)))

    assert "KerasActivationsHistograms" in ops(False)
    assert "HistogramFixedWidth" not in ops(False)
    types = ops(True)  # XLA: no custom op has an XLA kernel
    assert "KerasActivationsHistograms" not in types
    assert "UnsortedSegmentSum" in types


def _fit_records(activation="relu", nan=False):
    """The history of a small 2-hidden-layer fit, records every 2 steps."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,))]
        + [keras.layers.Dense(16, activation=activation, name=f"h{i}") for i in range(2)]
        + [keras.layers.Dense(1, name="out")]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.RandomState(0)
    x = rng.randn(48, 4).astype("float32")
    y = rng.randn(48, 1).astype("float32")
    if nan:
        x[5, 1] = np.nan  # the first batch's gradients are NaN
    monitor = GradientMonitor(update_freq=2, bins=12)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    return monitor.history


def _histograms(history):
    out = []
    for record in history:
        for entry in list(record["variables"].values()) + list(record["layers"].values()):
            hist = entry.get("histogram", entry.get("activation_histogram"))
            if hist is not None:
                out.append((hist["edges"], hist["counts"]))
    return out


_SITE_FIGURES = ("dead_units", "dead_fraction", "saturation", "activation_mean", "activation_std")


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
@pytest.mark.parametrize("nan", [False, True])
def test_records_equal_those_of_tensorflow_ops(kernel, monkeypatch, nan, activation):
    history = _fit_records(activation, nan=nan)
    monkeypatch.setattr(native, "_module", None)  # as if it could not be built
    reference = _fit_records(activation, nan=nan)
    with_kernel, without = _histograms(history), _histograms(reference)
    assert len(with_kernel) == len(without) > 0
    for (e1, c1), (e2, c2) in zip(with_kernel, without):
        np.testing.assert_array_equal(e1, e2)
        assert c1.sum() == c2.sum()
        assert np.abs(c1 - c2).max() <= 1  # a value on an edge
    for record, expected in zip(history, reference):
        for name, entry in expected["layers"].items():
            for key in _SITE_FIGURES:
                if entry[key] is None:
                    assert record["layers"][name][key] is None
                else:
                    np.testing.assert_allclose(record["layers"][name][key], entry[key], rtol=1e-5)


def _positive_counts(kernel, y, axis):
    """The kernel's figures of `y` with units on `axis`, as the monitor
    views it."""
    axes = [a for a in range(y.ndim) if a != axis]
    fired, sums, positive = accumulators._positive_counts(kernel, tf.constant(y), axes)
    return fired.numpy(), [float(v) for v in sums], float(positive)


@pytest.mark.parametrize(
    "shape, axis",
    [((128, 256), 1), ((5, 7), 1), ((4, 6, 6, 3), 3), ((4, 3, 6, 5), 1), ((2, 9, 4), 2)],
)
def test_positive_counts_equal_numpy(counts_op, shape, axis):
    op = counts_op
    rng = np.random.RandomState(sum(shape))
    y = np.maximum(rng.randn(*shape), 0).astype(np.float32)
    y.flat[::7] = -0.5  # a leaky unit's negative outputs are not positive
    fired, (pairs, total, half_sq), positive = _positive_counts(op, y, axis)
    axes = tuple(a for a in range(y.ndim) if a != axis)
    np.testing.assert_array_equal(fired, (y > 0).sum(axis=axes))
    assert pairs == y.size and positive == (y > 0).sum()
    y64 = y.astype(np.float64)
    np.testing.assert_allclose(total, y64.sum(), rtol=1e-6)
    np.testing.assert_allclose(half_sq, 0.5 * (y64**2).sum(), rtol=1e-6)


def test_positive_counts_mark_a_unit_with_nan_and_leave_inf_counted(counts_op):
    op = counts_op
    y = np.array([[0.0, 1.0, 2.0], [np.nan, 3.0, np.inf]], np.float32)
    fired, (pairs, total, half_sq), positive = _positive_counts(op, y, 1)
    assert np.isnan(fired[0]) and list(fired[1:]) == [2.0, 2.0]
    assert pairs == 6 and np.isnan(total) and np.isnan(positive) and np.isnan(half_sq)
    fired, (_, total, half_sq), positive = _positive_counts(op, y[:, 1:], 1)
    assert list(fired) == [2.0, 2.0] and positive == 4 and total == np.inf and half_sq == np.inf


def test_positive_counts_need_static_dimensions_after_the_unit_axis(counts_op):
    op = counts_op
    spec = tf.TensorSpec([None, 3, None], tf.float32)
    seen = []
    tf.function(lambda y: seen.append(accumulators._positive_counts(op, y, [0, 2])) or 0.0
                ).get_concrete_function(spec)
    assert seen == [None]  # the monitor then counts with TensorFlow's ops


def test_without_a_compiler_the_monitor_logs_once_and_falls_back(
    monkeypatch, tmp_path, caplog
):
    monkeypatch.setenv("KERAS_ACTIVATIONS_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_compiler", lambda: None)
    monkeypatch.setattr(native, "_module", native._UNSET)
    monkeypatch.setattr(native, "reason", None)
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        history = _fit_records()
        assert native.load() is None
    assert "no C++ compiler found" in native.reason
    messages = [r.getMessage() for r in caplog.records if "compiled kernels" in r.getMessage()]
    assert len(messages) == 1 and "tf.histogram_fixed_width" in messages[0]
    for edges, counts in _histograms(history):
        assert counts.sum() > 0 and np.all(np.diff(edges) > 0)


def test_disabled_by_the_environment(monkeypatch):
    monkeypatch.setattr(native, "_module", native._UNSET)
    monkeypatch.setattr(native, "reason", None)
    monkeypatch.setenv("KERAS_ACTIVATIONS_NATIVE", "0")
    assert native.histograms_op() is None
    assert native.reason == "disabled by KERAS_ACTIVATIONS_NATIVE"


def test_build_is_cached_and_atomic(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_ACTIVATIONS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_compiler", lambda: "/usr/bin/c++")
    calls = []

    class Done:
        returncode, stderr = 0, ""

    def run(command, **kwargs):
        calls.append(command)
        out = command[command.index("-o") + 1]
        assert os.path.dirname(out) == str(tmp_path / "cache")
        assert out != native.library_path("/usr/bin/c++")  # a temporary name
        with open(out, "wb") as f:
            f.write(b"library")
        return Done()

    monkeypatch.setattr(native.subprocess, "run", run)
    path = native.build()
    assert path == native.library_path("/usr/bin/c++") and open(path, "rb").read() == b"library"
    assert native.build() == path and len(calls) == 1  # built once
    assert os.listdir(tmp_path / "cache") == [os.path.basename(path)]
    assert "-O3" in calls[0] and native._SOURCE in calls[0]


def test_failed_build_names_the_compiler_and_its_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_ACTIVATIONS_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_compiler", lambda: "/usr/bin/c++")

    class Failed:
        returncode, stderr = 1, "kernels.cc:1: error: something broke"

    monkeypatch.setattr(native.subprocess, "run", lambda command, **kwargs: Failed())
    with pytest.raises(RuntimeError, match="(?s)/usr/bin/c\\+\\+ failed to build .*something broke"):
        native.build()
    assert os.listdir(tmp_path) == []  # no half-written library left


def test_library_path_depends_on_the_source_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_ACTIVATIONS_CACHE", str(tmp_path / "a"))
    a = native.library_path("/usr/bin/c++")
    assert a.startswith(str(tmp_path / "a")) and a.endswith(".so")
    assert native.library_path("/usr/bin/clang++") != a
    source = tmp_path / "kernels.cc"
    source.write_text(open(native._SOURCE).read() + "\n// changed\n")
    monkeypatch.setattr(native, "_SOURCE", str(source))
    assert native.library_path("/usr/bin/c++") != a


@pytest.mark.parametrize("activation, sites", [("relu", 2), ("leaky_relu", 2), ("tanh", 0)])
def test_relu_family_sites_are_counted_by_the_kernel(counts_op, monkeypatch, activation, sites):
    # ReLU-family sites (their derivative a step of their output) use it;
    # tanh's derivative is not a step, so its sites use TensorFlow's ops.
    calls = []

    def spy(y):
        calls.append(tuple(y.shape))
        return counts_op(y)

    monkeypatch.setattr(native, "positive_counts_op", lambda: spy)
    history = _fit_records(activation)
    assert len(calls) == 2 * sites  # each site in both traced train functions
    assert all(shape == (8, 16, 1) for shape in calls)
    assert history[-1]["layers"]["h0"]["activation_mean"] is not None


def test_cache_dir_falls_back_to_the_temporary_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_ACTIVATIONS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert native.cache_dir() == str(tmp_path / "cache" / "keras_activations")
    monkeypatch.setattr(native.os, "access", lambda path, mode: False)  # read-only home
    fallback = native.cache_dir()
    assert fallback.startswith(native.tempfile.gettempdir())
    assert os.path.basename(fallback).startswith("keras_activations-")
    monkeypatch.setenv("KERAS_ACTIVATIONS_CACHE", str(tmp_path / "mine"))
    assert native.cache_dir() == str(tmp_path / "mine")  # the variable wins


def test_not_used_when_a_gpu_is_visible(monkeypatch):
    # The kernels have CPU kernels only: with a GPU, TensorFlow's ops run
    # where the tensors are.
    real = tf.config.list_logical_devices
    monkeypatch.setattr(
        tf.config, "list_logical_devices",
        lambda kind=None: ["/device:GPU:0"] if kind == "GPU" else real(kind),
    )
    assert native.histograms_op() is None and native.positive_counts_op() is None
    xs = [tf.ones([3, 2])]
    types = _op_types(lambda: accumulators.histograms(xs, 5, False, tf.constant(True)))
    assert "HistogramFixedWidth" in types and "KerasActivationsHistograms" not in types
