"""GradientMonitor in ordinary Keras set-ups: several monitors, recurrent
layers, steps_per_execution that does not divide the epoch, a fit stopped
mid-epoch, gradient accumulation, XLA, and what a second fit costs (traces).

Every "last step" figure is checked against the gradient actually applied:
with plain SGD, (weights before - weights after) / learning rate.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import keras
import tensorflow as tf

from keras_activations import GradientMonitor

LR = 0.1


def _data(n=32, features=4, seed=1):
    rng = np.random.RandomState(seed)
    return rng.rand(n, features).astype("float32"), rng.randn(n, 1).astype("float32")


def _mlp(lr=LR, **compile_kwargs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, activation="relu", name="h0"),
            keras.layers.Dense(6, activation="tanh", name="h1"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    optimizer = compile_kwargs.pop("optimizer", None) or keras.optimizers.SGD(lr)
    model.compile(optimizer=optimizer, loss="mse", **compile_kwargs)
    return model


class AppliedGradients(keras.callbacks.Callback):
    """The gradient each step applied, from the weights around the step
    (plain SGD: g = (before - after) / lr), by step (1-based). Steps run in
    executions of `steps_per_execution`: only the execution's last step is
    seen, so use it with 1 step per execution or for the last step only."""

    def __init__(self, lr=LR):
        super().__init__()
        self.lr = lr
        self.applied = {}
        self.step = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.before = [v.numpy().astype(np.float64) for v in self.model.trainable_variables]

    def on_train_batch_end(self, batch, logs=None):
        after = [v.numpy().astype(np.float64) for v in self.model.trainable_variables]
        self.step += 1
        self.applied[self.step] = {
            v.path: (b - a) / self.lr for v, b, a in zip(self.model.trainable_variables, self.before, after)
        }


def _assert_norms_are_of(record, grads):
    total = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    np.testing.assert_allclose(record["global_norm"], total, rtol=1e-4)
    watched = [p for p in grads if p in record["variables"]]
    assert watched
    for path in watched:
        g = grads[path]
        np.testing.assert_allclose(record["variables"][path]["norm"], np.linalg.norm(g), rtol=1e-4, atol=1e-7)


def test_two_monitors_in_one_fit_both_record_and_leave_no_wrapper():
    model = _mlp()
    x, y = _data()
    h0 = model.get_layer("h0")
    activation, optimizer_hook = h0.activation, vars(model.optimizer).get("_all_reduce_sum_gradients")
    applied = AppliedGradients()
    a = GradientMonitor(update_freq=1, dead_warning_threshold=None)
    b = GradientMonitor(update_freq=2, dead_warning_threshold=None, layers=["h1"])
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[a, b, applied])
    assert [r["step"] for r in a.history] == [1, 2, 3, 4]
    assert [r["step"] for r in b.history] == [2, 4]
    for record in a.history:
        _assert_norms_are_of(record, applied.applied[record["step"]])
    for record in b.history:
        _assert_norms_are_of(record, applied.applied[record["step"]])
        assert set(record["layers"]) == {"h1"}
        same = a.history[record["step"] - 1]["layers"]["h1"]
        assert record["layers"]["h1"]["gradient_norm"] == pytest.approx(same["gradient_norm"], rel=1e-6)
    # b's window holds 2 steps, a's 1: the dead units of a window of 2 are
    # at most those of its last step.
    assert h0.activation is activation
    assert vars(model.optimizer).get("_all_reduce_sum_gradients") is optimizer_hook
    assert "train_step" not in vars(model)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # trains without them


def test_a_step_that_raises_detaches_every_monitor():
    model = _mlp()
    x, y = _data()

    class Boom(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise RuntimeError("boom")

    a, b = GradientMonitor(update_freq=1), GradientMonitor(update_freq=1)
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(x, y, batch_size=8, verbose=0, callbacks=[a, b, Boom()])
    # Keras does not call on_train_end: the next fit's on_train_begin (or
    # close()) cleans up; here close() by hand.
    a.close()
    b.close()
    assert "train_step" not in vars(model)
    assert "activation" not in vars(model.get_layer("h0")) or model.get_layer("h0").activation.__name__ == "relu"


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_recurrent_layers_get_norms_and_histograms(kind):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 3))
    h = getattr(keras.layers, kind)(4, name="rnn")(inputs)
    h = keras.layers.Dense(4, activation="relu", name="h")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(h))
    model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse")
    rng = np.random.RandomState(0)
    x, y = rng.randn(16, 5, 3).astype("float32"), rng.randn(16, 1).astype("float32")
    applied = AppliedGradients()
    everything = GradientMonitor(update_freq=1, dead_warning_threshold=None)
    only_rnn = GradientMonitor(update_freq=1, layers=["rnn"], dead_warning_threshold=None)
    model.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[everything, only_rnn, applied])
    rnn_vars = [v.path for v in model.get_layer("rnn").trainable_variables]
    assert rnn_vars
    for monitor in (everything, only_rnn):
        for record in monitor.history:
            grads = applied.applied[record["step"]]
            rnn = record["layers"]["rnn"]
            assert rnn["units"] is None  # the time loop's activations are no site
            norm = np.sqrt(sum(np.sum(grads[p] ** 2) for p in rnn_vars))
            np.testing.assert_allclose(rnn["gradient_norm"], norm, rtol=1e-4)
            for p in rnn_vars:
                assert record["variables"][p]["histogram"]["counts"].sum() == grads[p].size
    assert set(only_rnn.history[0]["layers"]) == {"rnn"}
    assert everything.history[0]["layers"]["h"]["units"] == 4


def _tape_gradients(model, x, y):
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True), training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    return {v.path: g.numpy().astype(np.float64) for v, g in zip(model.trainable_variables, grads)}


def test_steps_per_execution_that_does_not_divide_the_epoch():
    # 10 steps an execution over a 24-step epoch: executions of 10, 10, 4.
    # A record comes at the first execution end that fills its window (as
    # Keras's TensorBoard callback does); labels are real step counts and
    # each record is of its last step (learning rate 0, batches of 1: step
    # k's gradient is the tape's of example (k - 1) mod 24).
    model = _mlp(lr=0.0, steps_per_execution=10)
    x, y = _data(n=24)
    per_record = GradientMonitor(update_freq=10, dead_warning_threshold=None)
    per_epoch = GradientMonitor(dead_warning_threshold=None)
    model.fit(x, y, batch_size=1, epochs=2, shuffle=False, verbose=0, callbacks=[per_record, per_epoch])
    assert [(r["step"], r["steps"]) for r in per_record.history] == [(10, 10), (20, 10), (34, 14), (44, 10), (48, 4)]
    assert [(r["step"], r["steps"]) for r in per_epoch.history] == [(24, 24), (48, 24)]
    for record in per_record.history + per_epoch.history:
        k = (record["step"] - 1) % 24
        grads = _tape_gradients(model, x[k : k + 1], y[k : k + 1])
        assert record["gradient_step"] == record["step"]
        _assert_norms_are_of(record, grads)
        for path, g in grads.items():
            assert record["variables"][path]["histogram"]["counts"].sum() == g.size
        assert record["layers"]["h0"]["activation_histogram"]["counts"].sum() == 6


def test_a_fit_stopped_mid_epoch_records_its_last_step():
    # TerminateOnNaN stops after step 3 of 8; the per-epoch record holds
    # the NaN gradients of step 3, counted, and no histogram of another step.
    model = _mlp()
    x, y = _data()
    y[17] = np.nan  # batch 3 (steps are 1-based)
    monitor = GradientMonitor(dead_warning_threshold=None)
    model.fit(
        x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
        callbacks=[monitor, keras.callbacks.TerminateOnNaN()],
    )
    (record,) = monitor.history
    assert (record["step"], record["steps"], record["gradient_step"]) == (3, 3, 3)
    assert np.isnan(record["global_norm"])
    sizes = {p: v["size"] for p, v in record["variables"].items()}
    assert all(v["nonfinite"] == sizes[p] for p, v in record["variables"].items())
    assert all(v["histogram"] is None for v in record["variables"].values())
    assert record["layers"]["h0"]["activation_histogram"] is None


def test_gradient_accumulation_records_what_was_applied():
    optimizer = keras.optimizers.SGD(LR, gradient_accumulation_steps=2)
    model = _mlp(optimizer=optimizer)
    x, y = _data()
    applied = AppliedGradients()
    monitor = GradientMonitor(update_freq=1, dead_warning_threshold=None)
    model.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[monitor, applied])
    steps = [(r["step"], r["gradient_step"]) for r in monitor.history]
    assert steps == [(1, None), (2, 2), (3, None), (4, 4)]
    for record in monitor.history:
        if record["gradient_step"] is None:  # nothing applied: no norm
            assert record["global_norm"] is None
            assert all(v["norm"] is None and v["histogram"] is None for v in record["variables"].values())
        else:
            _assert_norms_are_of(record, applied.applied[record["step"]])
    per_two = GradientMonitor(update_freq=3, dead_warning_threshold=None)
    model.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[per_two])
    # Windows of steps 5-7 and 8: the first window's last apply is step 6.
    assert [(r["step"], r["gradient_step"]) for r in per_two.history] == [(3, 2), (4, 4)]


def _summary(monitor):
    out = []
    for r in monitor.history:
        layers = {
            n: (l["dead_units"], (l["saturation"], l["inactive_fraction"]), l["activation_mean"], l["gradient_norm"],
                None if l["activation_histogram"] is None else l["activation_histogram"]["counts"].tolist())
            for n, l in r["layers"].items()
        }
        hists = [v["histogram"]["counts"].tolist() for v in r["variables"].values()]
        out.append((r["step"], r["global_norm"], layers, hists))
    return out


def test_records_are_the_same_in_graph_mode_and_under_xla():
    x, y = _data(n=48)
    results = []
    for jit in (False, True):
        model = _mlp(lr=0.0, jit_compile=jit)
        monitor = GradientMonitor(update_freq=2, dead_warning_threshold=None, saturation_tolerance=0.3)
        model.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[monitor])
        results.append(_summary(monitor))
    graph, xla = results
    assert [r[0] for r in graph] == [r[0] for r in xla] == [2, 4, 6]
    for g, j in zip(graph, xla):
        for name in g[2]:
            dg, dj = g[2][name], j[2][name]
            assert dg[0] == dj[0] and dg[1] == dj[1]
            for a, b in zip(dg[2:4], dj[2:4]):
                assert (a is None and b is None) or a == pytest.approx(b, rel=1e-5, nan_ok=True)
            if dg[4] is not None:
                assert np.abs(np.subtract(dg[4], dj[4])).max() <= 1  # a rounding at an edge
        for a, b in zip(g[3], j[3]):
            assert sum(a) == sum(b)
            assert np.abs(np.subtract(a, b)).max() <= 1


def _counting_traces(model):
    """Counts the traces of the model's train step (Python runs only when
    TensorFlow traces)."""
    traces = []
    original = model.train_step

    def train_step(data):
        traces.append(1)
        return original(data)

    object.__setattr__(model, "train_step", train_step)
    return traces


def test_a_second_fit_retraces_nothing_and_a_new_monitor_traces_once():
    model = _mlp()
    x, y = _data()
    traces = _counting_traces(model)
    monitor = GradientMonitor(update_freq=2)
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[monitor])
    assert len(traces) == 1
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[monitor])
    assert len(traces) == 1  # the same monitor: nothing retraced
    assert [r["step"] for r in monitor.history] == [2, 4, 6, 8]
    model.fit(x, y, batch_size=8, verbose=0)
    plain = len(traces)  # Keras's own function again (traced once, or kept)
    assert plain <= 2
    fresh = GradientMonitor(update_freq="epoch")
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[fresh])
    assert len(traces) == plain + 1  # a new monitor: one trace, not two
    assert [r["step"] for r in fresh.history] == [4]


@pytest.mark.parametrize("jit", [False, True])
def test_site_figures_and_histograms_mask_nan_in_graph_mode_and_under_xla(jit):
    # The monitor's own reductions never see a NaN: comparisons and
    # explicit masks decide (XLA's max may drop NaN on some CPUs).
    import types

    from keras_activations import builtin_derivatives as bd
    from keras_activations.monitor import state

    y = np.array([[np.nan, 0.5, -1.0], [np.nan, np.nan, 2.0], [np.inf, -np.inf, 0.0]], np.float32)
    tanh = types.SimpleNamespace(pieces=None, of_output=bd.resolve_function("tanh").of_output, derivative=None)
    relu = types.SimpleNamespace(pieces=None, of_output=bd.resolve_function("relu").of_output, derivative=None)
    ours = types.SimpleNamespace(pieces=None, of_output=None, derivative=bd.resolve_function("leaky_relu").fn)

    @tf.function(jit_compile=jit)
    def figures(y):
        out = []
        for site in (tanh, relu, ours):
            fired, saturated = state._site_step(site, y, y, [0], 0.0, 0.3)
            out += [tf.cast(fired, tf.float32), saturated]
        counts, lohi = state.histograms([tf.reshape(y, [-1])], 4, xla=jit)
        return out + [counts[0], lohi[0]]

    tanh_fired, tanh_sat, relu_fired, relu_sat, ours_fired, ours_sat, counts, lohi = (
        t.numpy() for t in figures(tf.constant(y))
    )
    # tanh' = 1 - y^2 from the output: NaN pairs neither fire nor saturate
    # (unit 0 has only NaN and inf outputs: inf gives -inf, |.| > 0 fires).
    np.testing.assert_array_equal(tanh_fired, [1, 1, 1])
    assert tanh_sat == 1  # only y = -1: |1 - y^2| = 0 < 0.3
    np.testing.assert_array_equal(relu_fired, [1, 1, 1])  # inf > 0, 0.5, 2
    assert relu_sat == 3  # -inf, -1, 0 (NaN neither)
    np.testing.assert_array_equal(ours_fired, [1, 1, 1])
    np.testing.assert_array_equal(lohi, [-1.0, 2.0])
    np.testing.assert_array_equal(counts, [1, 1, 1, 1])  # -1, 0 | 0.5 | 2 ... finite only
    assert counts.sum() == 4


@pytest.mark.parametrize("jit", [False, True])
def test_one_bucket_arithmetic_on_the_device_under_xla_and_on_the_host(jit):
    # The activations are counted on the device (tf.histogram_fixed_width,
    # or its arithmetic under XLA), the gradients on the host: the same
    # counts and edges, at bucket edges, single values, extremes and NaN.
    from keras_activations.monitor import record, state

    rng = np.random.RandomState(0)
    cases = [
        rng.randn(10007).astype(np.float32),
        np.linspace(-1, 1, 301, dtype=np.float32),  # values on the edges
        np.full(17, 3.5, np.float32),  # a single value
        np.array([np.nan, np.inf, -np.inf], np.float32),  # no finite value
        # A tiny range of normal floats (TensorFlow's CPU kernels flush
        # subnormals to 0, NumPy does not: below 1.2e-38 the two differ).
        np.array([2e-38, 6e-38, np.nan, 4e-38], np.float32),
        np.array([-3e38, 3e38, 0.0], np.float32),  # the range overflows float32
        np.concatenate([rng.rand(500), [np.nan] * 7, [np.inf] * 3]).astype(np.float32),
    ]

    @tf.function(jit_compile=jit)
    def device(flats):
        return state.histograms(flats, 7, xla=jit)

    counts, lohi = device([tf.constant(c) for c in cases])
    for values, c, r in zip(cases, counts.numpy(), lohi.numpy()):
        host = record.histogram(values, 7)
        np.testing.assert_array_equal(c, host["counts"])
        np.testing.assert_array_equal(record.edges(r, 7), host["edges"])
        assert c.sum() == np.isfinite(values).sum()


def test_the_traced_step_holds_no_constant_the_size_of_the_model(monkeypatch):
    # The NaN/inf count per variable finds each gradient element's variable
    # at run time: a constant of one id per element would put the model's
    # parameter count into the graph (100 MB for a 25M-parameter model).
    from tensorflow.python.framework import func_graph

    largest = []
    create = func_graph.FuncGraph._create_op_internal

    def record(self, op_type, *args, **kwargs):
        op = create(self, op_type, *args, **kwargs)
        if op_type == "Const":
            largest.append(int(np.prod(op.outputs[0].shape)))
        return op

    monkeypatch.setattr(func_graph.FuncGraph, "_create_op_internal", record)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((300,)), keras.layers.Dense(200, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = np.random.RandomState(0).randn(16, 300).astype("float32")
    x[3, 7] = np.nan  # the count's branch runs, and counts
    monitor = GradientMonitor(dead_warning_threshold=None)
    y = np.zeros((16, 1), "float32")
    model.fit(x, y, batch_size=16, verbose=0, callbacks=[monitor])
    assert max(largest) < 1000  # 60,200 parameters
    # The reference, the weights after the one step: SGD with learning
    # rate 0 moves a weight only where its gradient is NaN/inf (0 * NaN).
    want = {v.path: int(np.sum(~np.isfinite(v.numpy()))) for v in model.trainable_variables}
    (record,) = monitor.history
    assert {path: v["nonfinite"] for path, v in record["variables"].items()} == want
    assert sum(want.values()) > 0
