"""GradientMonitor: the figures of a record against closed forms.

Most tests train with learning rate 0, so the weights never move and the
gradient of each batch can be recomputed independently with a GradientTape.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import keras
import tensorflow as tf

from keras_activations import GradientMonitor


def _fit(model, x, y, monitor=None, batch_size=8, epochs=1, **kwargs):
    callbacks = [monitor] if monitor is not None else []
    return model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
        **kwargs,
    )


def _tape_gradients(model, x, y):
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    return {v.path: g.numpy().astype(np.float64) for v, g in zip(model.trainable_variables, grads)}


def _mlp(activation="tanh", width=6, depth=2, seed=0):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((4,))]
    layers += [
        keras.layers.Dense(width, activation=activation, name=f"h{i}")
        for i in range(depth)
    ]
    layers += [keras.layers.Dense(1, name="out")]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    return model


def _data(n=32, seed=1):
    rng = np.random.RandomState(seed)
    return rng.rand(n, 4).astype("float32"), rng.randn(n, 1).astype("float32")


def test_gradient_figures_equal_tape_gradients():
    model = _mlp()
    x, y = _data()
    monitor = GradientMonitor(update_freq=1, bins=10)
    _fit(model, x, y, monitor)
    assert [r["step"] for r in monitor.history] == [1, 2, 3, 4]
    assert all(r["steps"] == 1 and r["epoch"] == 0 for r in monitor.history)
    previous = None
    for k, record in enumerate(monitor.history):
        grads = _tape_gradients(model, x[8 * k : 8 * k + 8], y[8 * k : 8 * k + 8])
        total = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
        np.testing.assert_allclose(record["global_norm"], total, rtol=1e-5)
        for path, g in grads.items():
            entry = record["variables"][path]
            np.testing.assert_allclose(entry["norm"], np.linalg.norm(g), rtol=1e-5)
            assert entry["nonfinite"] == 0 and entry["size"] == g.size
            hist = entry["histogram"]
            np.testing.assert_allclose(hist["edges"][0], g.min(), rtol=1e-5, atol=1e-9)
            if g.max() > g.min():  # else a narrow bucket right of the single value
                np.testing.assert_allclose(hist["edges"][-1], g.max(), rtol=1e-5, atol=1e-9)
            assert hist["counts"].sum() == g.size
            expected, _ = np.histogram(g, bins=hist["edges"])
            assert np.abs(hist["counts"] - expected).max() <= 1
        for name in ("h0", "h1", "out"):
            layer_grads = [g for p, g in grads.items() if p.split("/")[-2] == name]
            norm = np.sqrt(sum(np.sum(g**2) for g in layer_grads))
            np.testing.assert_allclose(record["layers"][name]["gradient_norm"], norm, rtol=1e-5)
            cosine = record["layers"][name]["gradient_cosine"]
            if previous is None:
                assert cosine is None
            else:
                a = np.concatenate([g.ravel() for g in layer_grads])
                b = np.concatenate([g.ravel() for p, g in previous.items() if p.split("/")[-2] == name])
                np.testing.assert_allclose(cosine, a @ b / np.linalg.norm(a) / np.linalg.norm(b), rtol=1e-4)
        previous = grads


@pytest.mark.parametrize("update_freq, per_execution", [(2, 1), (2, 2), (3, 1)])
def test_gradient_cosine_compares_the_last_steps_of_two_windows(update_freq, per_execution):
    # Each record's cosine is between the last step of its window (the one
    # its histograms show) and the last step of the previous window, with
    # steps between them and with several snapshot steps per execution.
    model = _mlp()
    model.compile(
        optimizer=keras.optimizers.SGD(0.0), loss="mse", steps_per_execution=per_execution
    )
    x, y = _data(n=48)
    monitor = GradientMonitor(update_freq=update_freq)
    _fit(model, x, y, monitor)
    steps = [r["step"] for r in monitor.history]
    assert steps == list(range(update_freq, 7, update_freq))

    def layer_gradient(step, name):
        grads = _tape_gradients(model, x[8 * step - 8 : 8 * step], y[8 * step - 8 : 8 * step])
        return np.concatenate([g.ravel() for p, g in grads.items() if p.split("/")[-2] == name])

    for k, record in enumerate(monitor.history):
        for name in ("h0", "h1", "out"):
            cosine = record["layers"][name]["gradient_cosine"]
            if k == 0:
                assert cosine is None
                continue
            a, b = layer_gradient(steps[k], name), layer_gradient(steps[k - 1], name)
            expected = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
            np.testing.assert_allclose(cosine, expected, rtol=1e-4, atol=1e-6)


def test_gradient_cosine_per_epoch_of_unknown_length():
    # Every step of an epoch of unknown length is a snapshot step; the
    # record compares the epoch's last step with the previous epoch's.
    # Learning rate 0 and the same batches each epoch: exactly 1.
    model = _mlp()
    x, y = _data()
    data = tf.data.Dataset.from_generator(
        lambda: iter([(x[k : k + 8], y[k : k + 8]) for k in range(0, 32, 8)]),
        output_signature=(tf.TensorSpec([None, 4]), tf.TensorSpec([None, 1])),
    )
    monitor = GradientMonitor()
    model.fit(data, epochs=2, verbose=0, callbacks=[monitor])
    first, second = monitor.history
    assert first["layers"]["h0"]["gradient_cosine"] is None
    for name in ("h0", "h1", "out"):
        np.testing.assert_allclose(second["layers"][name]["gradient_cosine"], 1.0, rtol=1e-6)


def _assert_record_is_of_step(model, x, y, record, k=None, batch=8):
    """Every "last step" figure of `record` is of its own step: norms and
    histograms against the tape's gradient of that step's batch (batch `k`,
    by default the record's step; learning rate 0: the weights never
    move)."""
    k = record["step"] - 1 if k is None else k
    grads = _tape_gradients(model, x[batch * k : batch * k + batch], y[batch * k : batch * k + batch])
    assert record["gradient_step"] == record["step"]
    total = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    np.testing.assert_allclose(record["global_norm"], total, rtol=1e-5)
    for path, g in grads.items():
        entry = record["variables"][path]
        np.testing.assert_allclose(entry["norm"], np.linalg.norm(g), rtol=1e-5)
        hist = entry["histogram"]
        assert hist["counts"].sum() == g.size
        np.testing.assert_allclose(hist["edges"][0], g.min(), rtol=1e-5, atol=1e-9)
    return grads


def test_a_short_last_window_is_of_its_own_last_step():
    # update_freq=2 over 5 steps: the last record is a window of one step,
    # and its norms, histograms and cosine are of step 5 (they were of
    # step 4, or None, when the snapshot was predicted wrongly).
    model = _mlp(activation="relu")
    x, y = _data(n=40)
    monitor = GradientMonitor(update_freq=2)
    history = _fit(model, x, y, monitor)
    assert set(history.history) == {"loss"}
    assert [r["step"] for r in monitor.history] == [2, 4, 5]
    assert [r["steps"] for r in monitor.history] == [2, 2, 1]
    for record in monitor.history:
        _assert_record_is_of_step(model, x, y, record)
    assert monitor.history[2]["layers"]["h0"]["gradient_cosine"] is not None
    assert monitor.history[2]["layers"]["h0"]["activation_histogram"]["counts"].sum() == 8 * 6
    pre = x[32:40] @ model.get_layer("h0").kernel.numpy() + model.get_layer("h0").bias.numpy()
    assert monitor.history[2]["layers"]["h0"]["dead_units"] == int(np.sum(np.all(pre <= 0, axis=0)))


@pytest.mark.parametrize("per_execution", [1, 3])
def test_epoch_records_are_of_each_epochs_last_step(per_execution):
    # steps_per_execution 3 over 4 steps: the second execution of an epoch
    # runs one step; labels count real steps (not 3 + 3).
    model = _mlp(activation="relu")
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", steps_per_execution=per_execution)
    x, y = _data()
    monitor = GradientMonitor()
    _fit(model, x, y, monitor, epochs=3)
    assert [(r["step"], r["steps"]) for r in monitor.history] == [(4, 4), (8, 4), (12, 4)]
    for record in monitor.history:  # the same batches every epoch
        _assert_record_is_of_step(model, x, y, record, k=3)


def test_activation_figures_equal_numpy_over_the_window():
    model = _mlp(activation="tanh")
    x, y = _data()
    monitor = GradientMonitor(update_freq="epoch", saturation_tolerance=0.5)
    _fit(model, x, y, monitor, epochs=2)
    assert [(r["step"], r["epoch"], r["steps"]) for r in monitor.history] == [(4, 0, 4), (8, 1, 4)]
    pre = model.layers[0].kernel.numpy().T @ x.T.astype(np.float64)
    pre = (pre + model.layers[0].bias.numpy()[:, None]).T
    out = np.tanh(pre)
    layer = monitor.history[-1]["layers"]["h0"]
    assert layer["depth"] == 0 and layer["units"] == 6
    np.testing.assert_allclose(layer["activation_mean"], out.mean(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(layer["activation_std"], out.std(), rtol=1e-4)
    np.testing.assert_allclose(layer["saturation"], np.mean(1 - out**2 < 0.5))
    assert layer["dead_units"] == 0 and layer["dead_fraction"] == 0.0
    hist = layer["activation_histogram"]  # the window's last batch
    last = out[-8:]
    assert hist["counts"].sum() == last.size
    np.testing.assert_allclose(hist["edges"][[0, -1]], [last.min(), last.max()], rtol=1e-5)
    assert monitor.history[-1]["layers"]["out"]["units"] is None  # linear: no site


def _planted_dense():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, activation="elu", name="elu_layer")(inputs)
    h = keras.layers.Dense(
        8,
        activation="relu",
        kernel_initializer=keras.initializers.Constant(0.01),
        bias_initializer=keras.initializers.Constant(-10.0),
        name="dead_layer",
    )(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_planted_dead_dense_layer_is_exactly_all_dead_and_warned():
    model = _planted_dense()
    x, y = _data()
    monitor = GradientMonitor()
    with pytest.warns(UserWarning, match="'dead_layer'"):
        _fit(model, x, y, monitor, epochs=2)
    for record in monitor.history:
        assert record["layers"]["dead_layer"]["dead_units"] == 8
        assert record["layers"]["dead_layer"]["dead_fraction"] == 1.0
        assert record["layers"]["elu_layer"]["dead_units"] == 0
        assert record["layers"]["elu_layer"]["units"] == 8
        # A dead layer passes no gradient: its kernel gradient is exactly 0.
        assert record["variables"]["dead_layer/kernel"]["norm"] == 0.0


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_planted_dead_conv_channels(data_format):
    keras.utils.set_random_seed(0)
    shape = (5, 5, 3) if data_format == "channels_last" else (3, 5, 5)
    model = keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(
                4,
                3,
                activation="relu",
                data_format=data_format,
                kernel_initializer=keras.initializers.Constant(0.01),
                bias_initializer=keras.initializers.Constant([-10.0, -10.0, 10.0, 10.0]),
                name="conv",
            ),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    # TF's CPU kernels have no NCHW convolution; XLA does.
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss="mse",
        jit_compile=data_format == "channels_first",
    )
    x = np.random.RandomState(0).rand(16, *shape).astype("float32")
    monitor = GradientMonitor(update_freq=1, dead_warning_threshold=None)
    _fit(model, x, np.zeros((16, 1), "float32"), monitor)
    for record in monitor.history:
        conv = record["layers"]["conv"]
        assert conv["units"] == 4 and conv["dead_units"] == 2
        assert conv["activation_histogram"]["counts"].sum() == 8 * 3 * 3 * 4


def test_unit_firing_for_one_example_is_alive_only_in_its_windows():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(
                2,
                activation="relu",
                kernel_initializer=keras.initializers.Constant(1.0),
                bias_initializer=keras.initializers.Constant([-0.5, -10.0]),
                name="units",
            ),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = np.zeros((16, 1), "float32")
    x[9] = 1.0  # the only example unit 0 fires for: batch 3 of 4
    y = np.zeros((16, 1), "float32")
    per_step = GradientMonitor(update_freq=1, dead_warning_threshold=None)
    _fit(model, x, y, per_step, batch_size=4)
    assert [r["layers"]["units"]["dead_units"] for r in per_step.history] == [2, 2, 1, 2]
    per_epoch = GradientMonitor(dead_warning_threshold=None)
    _fit(model, x, y, per_epoch, batch_size=4)
    assert [r["layers"]["units"]["dead_units"] for r in per_epoch.history] == [1]
    two_steps = GradientMonitor(update_freq=2, dead_warning_threshold=None)
    _fit(model, x, y, two_steps, batch_size=4)
    assert [r["layers"]["units"]["dead_units"] for r in two_steps.history] == [2, 1]


def test_maxout_counts_pieces_that_never_win():
    from keras_activations import Maxout

    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(
                4,
                kernel_initializer=keras.initializers.Constant([[1.0, 0.0, 1.0, 0.0]]),
                bias_initializer=keras.initializers.Constant([0.0, -10.0, 0.0, -10.0]),
            ),
            Maxout(num_units=2, name="maxout"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = np.random.RandomState(0).rand(16, 1).astype("float32")
    monitor = GradientMonitor(dead_warning_threshold=None)
    _fit(model, x, np.zeros((16, 1), "float32"), monitor)
    maxout = monitor.history[0]["layers"]["maxout"]
    assert maxout["units"] == 4 and maxout["dead_units"] == 2


def _first_over_last(activation, initializer):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((16,))]
        + [
            keras.layers.Dense(16, activation=activation, kernel_initializer=initializer)
            for _ in range(10)
        ]
        + [keras.layers.Dense(1, kernel_initializer=initializer)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = np.random.RandomState(0).randn(64, 16).astype("float32")
    y = np.random.RandomState(1).randn(64, 1).astype("float32")
    monitor = GradientMonitor()
    _fit(model, x, y, monitor, batch_size=64)
    layers = monitor.history[0]["layers"]
    names = sorted(layers, key=lambda n: layers[n]["depth"])
    return layers[names[0]]["gradient_norm"] / layers[names[9]]["gradient_norm"]


def test_vanishing_gradients_sigmoid_against_selu_and_elu():
    sigmoid = _first_over_last("sigmoid", "glorot_uniform")
    selu = _first_over_last("selu", "lecun_normal")
    elu = _first_over_last("elu", "he_normal")
    assert sigmoid < 1e-3
    assert 0.1 < selu < 10 and 0.1 < elu < 10
    assert selu / sigmoid > 100 and elu / sigmoid > 100


def test_watching_changes_nothing():
    def run(with_monitor):
        keras.utils.set_random_seed(7)
        model = keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dropout(0.3),
                keras.layers.Dense(8, activation="elu"),
                keras.layers.Dense(1),
            ]
        )
        model.compile(optimizer="adam", loss="mse")
        x, y = _data()
        monitor = GradientMonitor(update_freq=2) if with_monitor else None
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor] if monitor else [])
        return [w.numpy() for w in model.weights]

    for a, b in zip(run(False), run(True)):
        np.testing.assert_array_equal(a, b)


class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(6, activation="relu", name="hidden")
        self.out = keras.layers.Dense(1, name="out")

    def call(self, x):
        return self.out(self.hidden(x))


@pytest.mark.parametrize(
    "variant", ["functional_jit", "functional_jit_spe3", "subclassed_spe3", "frozen"]
)
def test_variants_match_tape(variant):
    keras.utils.set_random_seed(0)
    x, y = _data(n=48)
    if variant == "subclassed_spe3":
        model = SubclassedNet()
        model(x[:1])
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", steps_per_execution=3)
        hidden = "hidden"
    else:
        inputs = keras.Input((4,))
        h = keras.layers.Dense(6, activation="relu", name="hidden")(inputs)
        h = keras.layers.Dense(6, activation="tanh", name="second")(h)
        model = keras.Model(inputs, keras.layers.Dense(1, name="out")(h))
        if variant == "frozen":
            model.get_layer("hidden").trainable = False
        model.compile(
            optimizer=keras.optimizers.SGD(0.0),
            loss="mse",
            jit_compile=variant.startswith("functional_jit"),
            steps_per_execution=3 if variant.endswith("spe3") else 1,
        )
        hidden = "hidden"
    monitor = GradientMonitor(update_freq=3, dead_warning_threshold=None)
    _fit(model, x, y, monitor)
    assert [r["step"] for r in monitor.history] == [3, 6]
    previous = None
    for record in monitor.history:
        k = record["step"] - 1  # the window's last batch
        grads = _tape_gradients(model, x[8 * k : 8 * k + 8], y[8 * k : 8 * k + 8])
        cosine = record["layers"]["out"]["gradient_cosine"]
        if previous is None:
            assert cosine is None
        else:  # with the previous window's last batch
            a, b = (
                np.concatenate([g.ravel() for p, g in d.items() if p.split("/")[-2] == "out"])
                for d in (grads, previous)
            )
            np.testing.assert_allclose(cosine, a @ b / np.linalg.norm(a) / np.linalg.norm(b), rtol=1e-4)
        previous = grads
        assert set(record["variables"]) == set(grads)
        total = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
        np.testing.assert_allclose(record["global_norm"], total, rtol=1e-5)
        for path, g in grads.items():
            assert record["variables"][path]["histogram"]["counts"].sum() == g.size
        layer = record["layers"][hidden]
        assert layer["units"] == 6 and layer["dead_units"] is not None
        if variant == "frozen":
            assert layer["gradient_norm"] is None  # no trainable weights
            assert "hidden/kernel" not in record["variables"]
        # dead units over the 3-step window, from the pre-activations
        window = x[8 * (k - 2) : 8 * k + 8]
        h_layer = model.get_layer(hidden) if variant != "subclassed_spe3" else model.hidden
        pre = window @ h_layer.kernel.numpy() + h_layer.bias.numpy()
        assert layer["dead_units"] == int(np.sum(np.all(pre <= 0, axis=0)))


def test_rows_and_csv(tmp_path):
    model = _mlp()
    x, y = _data()
    monitor = GradientMonitor(update_freq=2)
    _fit(model, x, y, monitor)
    rows = monitor.to_rows()
    assert len(rows) == 2 * 3
    assert rows[0]["layer"] == "h0" and rows[0]["step"] == 2 and rows[0]["depth"] == 0
    assert rows[0]["global_norm"] == monitor.history[0]["global_norm"]
    path = tmp_path / "m.csv"
    assert monitor.to_csv(path) == 6
    lines = path.read_text().splitlines()
    assert lines[0].split(",")[:4] == ["step", "epoch", "layer", "depth"]
    assert len(lines) == 7
    assert "h1" in monitor.table()


@pytest.mark.parametrize("source", ["array", "unknown_length", "spe3"])
def test_epoch_records_need_no_batch_hook(source):
    """update_freq="epoch" is async-safe (Keras may dispatch batch ends in a
    thread): the device counts the steps and snapshots the epoch's last."""
    model = _mlp()
    x, y = _data(n=48)
    if source == "spe3":
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", steps_per_execution=3)
    monitor = GradientMonitor(dead_warning_threshold=None)
    assert monitor.async_safe and not GradientMonitor(update_freq=2).async_safe
    if source == "unknown_length":
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        data = data.filter(lambda a, b: True)  # cardinality unknown
        model.fit(data, epochs=2, verbose=0, callbacks=[monitor])
    else:
        _fit(model, x, y, monitor, epochs=2)
    assert [(r["step"], r["epoch"], r["steps"]) for r in monitor.history] == [(6, 0, 6), (12, 1, 6)]
    grads = _tape_gradients(model, x[40:], y[40:])  # the epoch's last batch
    record = monitor.history[-1]
    total = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    np.testing.assert_allclose(record["global_norm"], total, rtol=1e-5)
    for path, g in grads.items():
        assert record["variables"][path]["histogram"]["counts"].sum() == g.size
    assert record["layers"]["h0"]["gradient_cosine"] is not None


def test_negative_derivative_is_alive_and_not_saturated():
    """|f'| decides: abs_rectifier's slope -1 on x < 0 is neither dead nor
    saturated, even with a dead tolerance; a LeakyReLU with slope 0 dies."""
    import keras_activations as ka

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    a = keras.layers.Dense(5, bias_initializer=keras.initializers.Constant(-10.0), name="a")(inputs)
    a = ka.AbsRectifier(name="abs")(a)
    b = keras.layers.Dense(5, bias_initializer=keras.initializers.Constant(-10.0), name="b")(a)
    b = ka.LeakyReLU(negative_slope=0.0, name="leaky0")(b)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(b))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x, y = _data()
    monitor = GradientMonitor(dead_tolerance=0.5, dead_warning_threshold=None)
    _fit(model, x, y, monitor)
    layers = monitor.history[-1]["layers"]
    # Rectifiers: the off pairs are inactive, not saturated.
    assert layers["abs"]["dead_units"] == 0 and layers["abs"]["inactive_fraction"] == 0.0
    assert layers["leaky0"]["dead_units"] == 5 and layers["leaky0"]["inactive_fraction"] == 1.0
    assert layers["abs"]["saturation"] is None and layers["leaky0"]["saturation"] is None


class _Spiky(keras.layers.Layer):
    """y = x * w, whose gradient for w is NaN in element 0 and inf in 1."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        @tf.custom_gradient
        def spiky(x, w):
            def grad(dy):
                gw = tf.reduce_sum(dy * x, axis=0)
                gw = tf.tensor_scatter_nd_update(gw, [[0], [1]], [np.nan, np.inf])
                return dy * w, gw

            return x * w, grad

        return spiky(x, tf.identity(self.w.value))


def test_nonfinite_gradients_are_counted_and_left_out_of_the_histogram():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    h = _Spiky(name="spiky")(inputs)
    h = keras.layers.Dense(3, activation="relu", name="h")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(h))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x, y = _data(n=8)
    grads = _tape_gradients(model, x, y)  # before: lr 0 times NaN is NaN
    monitor = GradientMonitor(update_freq=1, dead_warning_threshold=None)
    _fit(model, x, y, monitor)
    (record,) = monitor.history
    for path, entry in record["variables"].items():
        g = grads[path]
        bad = int(np.sum(~np.isfinite(g)))
        assert entry["nonfinite"] == bad
        hist = entry["histogram"]
        assert hist["counts"].sum() == g.size - bad
        assert np.all(np.isfinite(hist["edges"]))
        good = g[np.isfinite(g)]
        np.testing.assert_allclose(hist["edges"][0], good.min(), rtol=1e-5)
        if good.max() > good.min():  # else the range is widened a little
            np.testing.assert_allclose(hist["edges"][-1], good.max(), rtol=1e-5)
    assert record["variables"][model.get_layer("spiky").w.path]["nonfinite"] == 2
    assert np.isnan(record["global_norm"])


def test_nan_activations_neither_fire_nor_saturate():
    # One example is NaN: the units that the other examples fire are alive,
    # the NaN pairs are neither saturated nor in the histogram.
    # The activation keeps the NaN on every CPU (a fused ReLU may turn it
    # into 0, and then the pair is off, as the network computed it).
    import keras_activations as ka

    inputs = keras.Input((4,))
    h = keras.layers.Dense(3, kernel_initializer="ones", bias_initializer="zeros", name="pre")(inputs)
    h = ka.LeakyReLU(negative_slope=0.0, name="h")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(h))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = np.random.RandomState(0).rand(8, 4).astype("float32") + 0.1
    x[0] = np.nan
    monitor = GradientMonitor(update_freq=1, dead_warning_threshold=None)
    _fit(model, x, np.zeros((8, 1), "float32"), monitor)
    layer = monitor.history[0]["layers"]["h"]
    assert layer["dead_units"] == 0
    assert layer["inactive_fraction"] == 0.0
    assert layer["activation_histogram"]["counts"].sum() == 7 * 3


def test_nan_in_a_layers_second_call_hides_no_fired_unit():
    # The second call of a shared layer in a step is added outside the
    # step's end; its NaN example must not hide the units its other
    # examples fire (the first call fires none).
    import keras_activations as ka

    a, b = keras.Input((4,)), keras.Input((4,))
    pre = keras.layers.Dense(3, kernel_initializer="ones", bias_initializer="zeros", name="pre")
    shared = ka.LeakyReLU(negative_slope=0.0, name="shared")
    merged = keras.layers.Concatenate()([shared(pre(a)), shared(pre(b))])
    model = keras.Model([a, b], keras.layers.Dense(1, name="out")(merged))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    rng = np.random.RandomState(0)
    xa = -(rng.rand(8, 4) + 0.1).astype("float32")  # every unit off
    xb = (rng.rand(8, 4) + 0.1).astype("float32")  # every unit on ...
    xb[3] = np.nan  # ... but one example
    monitor = GradientMonitor(update_freq=1, dead_warning_threshold=None)
    _fit(model, [xa, xb], np.zeros((8, 1), "float32"), monitor)
    layer = monitor.history[0]["layers"]["shared"]
    assert layer["dead_units"] == 0
    assert layer["inactive_fraction"] == 0.5  # the first call's 24 of 48 pairs


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "softsign"])
def test_layer_called_twice_in_a_step_counts_both_calls(activation):
    # A shared layer is one site; a window holds the examples of both calls.
    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,)), keras.Input((4,))
    shared = keras.layers.Dense(5, activation=activation, name="shared")
    merged = keras.layers.Concatenate()([shared(a), shared(b)])
    model = keras.Model([a, b], keras.layers.Dense(1, name="out")(merged))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    rng = np.random.RandomState(0)
    xa = rng.randn(16, 4).astype("float32")
    xb = (rng.randn(16, 4) - 3).astype("float32")
    y = np.zeros((16, 1), "float32")
    monitor = GradientMonitor(update_freq="epoch", saturation_tolerance=0.2, dead_warning_threshold=None)
    _fit(model, [xa, xb], y, monitor)
    layer = monitor.history[0]["layers"]["shared"]
    kernel, bias = shared.kernel.numpy(), shared.bias.numpy()
    pre = np.concatenate([xa, xb]).astype(np.float64) @ kernel + bias
    f, d = {
        "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
        "sigmoid": (
            lambda z: 1 / (1 + np.exp(-z)),
            lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2,
        ),
        "softsign": (lambda z: z / (1 + np.abs(z)), lambda z: 1 / (1 + np.abs(z)) ** 2),
    }[activation]
    out = f(pre)
    np.testing.assert_allclose(layer["activation_mean"], out.mean(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(layer["activation_std"], out.std(), rtol=1e-4)
    # A ReLU's tiny derivatives are its off pairs, not saturation.
    share, other = ("inactive_fraction", "saturation") if activation == "relu" else ("saturation", "inactive_fraction")
    np.testing.assert_allclose(layer[share], np.mean(d(pre) < 0.2))
    assert layer[other] is None
    assert layer["dead_units"] == int(np.sum(np.all(d(pre) <= 0, axis=0)))
