"""GradientMonitor: update ratios and weight norms against the weights
before and after each step, read by an independent callback."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import keras

from keras_activations import GradientMonitor
from keras_activations.monitor import events


class _Weights(keras.callbacks.Callback):
    """The trainable weights (float64) before and after every batch."""

    def __init__(self):
        super().__init__()
        self.before, self.after = [], []

    def _values(self):
        return {v.path: np.array(v.numpy(), np.float64) for v in self.model.trainable_variables}

    def on_train_batch_begin(self, batch, logs=None):
        self.before.append(self._values())

    def on_train_batch_end(self, batch, logs=None):
        self.after.append(self._values())


def _model(optimizer, jit_compile=False):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(5, activation="tanh", name="h0"),
        keras.layers.Dense(1, name="out"),
    ])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


def _data(n=24):
    rng = np.random.RandomState(1)
    return rng.rand(n, 4).astype("float32"), rng.randn(n, 1).astype("float32")


def _fit(model, monitor, weights, epochs=1):
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=[weights, monitor])


def _paths(layer):
    return [v.path for v in layer.trainable_variables]


def _expected(before, after, paths):
    update = np.sqrt(sum(np.sum((after[p] - before[p]) ** 2) for p in paths))
    norm = np.sqrt(sum(np.sum(after[p] ** 2) for p in paths))
    return update / norm, norm


@pytest.mark.parametrize(
    "optimizer, jit_compile",
    [
        (lambda: keras.optimizers.SGD(0.1), False),
        (lambda: keras.optimizers.SGD(0.1, momentum=0.9), False),
        (lambda: keras.optimizers.Adam(0.01), False),
        (lambda: keras.optimizers.Adam(0.01), True),
        # Weight decay is applied before the gradient: it is in the step.
        (lambda: keras.optimizers.AdamW(0.01, weight_decay=0.5), False),
    ],
    ids=["sgd", "momentum", "adam", "adam_xla", "adamw"],
)
def test_update_ratio_is_the_steps_change_over_the_weights(optimizer, jit_compile):
    model = _model(optimizer(), jit_compile)
    monitor, weights = GradientMonitor(update_freq=1, dead_warning_threshold=None), _Weights()
    _fit(model, monitor, weights)
    assert [r["step"] for r in monitor.history] == [1, 2, 3]
    for record, before, after in zip(monitor.history, weights.before, weights.after):
        assert all(not np.array_equal(before[p], after[p]) for p in before)  # every variable moved
        for path, entry in record["variables"].items():
            ratio, norm = _expected(before, after, [path])
            assert entry["update_ratio"] == pytest.approx(ratio, rel=1e-5)
            assert entry["weight_norm"] == pytest.approx(norm, rel=1e-6)
        for layer in model.layers:
            name = layer.name
            ratio, norm = _expected(before, after, _paths(layer))
            assert record["layers"][name]["update_ratio"] == pytest.approx(ratio, rel=1e-5)
            assert record["layers"][name]["weight_norm"] == pytest.approx(norm, rel=1e-6)


def test_update_ratio_is_of_the_windows_last_step():
    # Windows of 2 steps, the last one of 1 (3 steps): each record's ratio is
    # of its window's last step, its weight norm of the weights after it.
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    monitor, weights = GradientMonitor(update_freq=2, dead_warning_threshold=None), _Weights()
    _fit(model, monitor, weights, epochs=2)
    assert [r["step"] for r in monitor.history] == [2, 4, 6]
    for record in monitor.history:
        k = record["step"] - 1
        ratio, norm = _expected(weights.before[k], weights.after[k], _paths(model.layers[0]))
        assert record["layers"]["h0"]["update_ratio"] == pytest.approx(ratio, rel=1e-5)
        assert record["layers"]["h0"]["weight_norm"] == pytest.approx(norm, rel=1e-6)


def test_a_step_that_applies_nothing_has_update_ratio_zero():
    # Under gradient accumulation the variables move every second step.
    model = _model(keras.optimizers.SGD(0.1, gradient_accumulation_steps=2))
    monitor, weights = GradientMonitor(update_freq=1, dead_warning_threshold=None), _Weights()
    _fit(model, monitor, weights)
    ratios = [r["layers"]["h0"]["update_ratio"] for r in monitor.history]
    assert ratios[0] == 0.0 and ratios[2] == 0.0
    expected, _ = _expected(weights.before[1], weights.after[1], _paths(model.layers[0]))
    assert ratios[1] == pytest.approx(expected, rel=1e-5) and expected > 0


def test_update_ratio_without_a_snapshot_of_the_last_step_is_none():
    # A fit stopped mid-epoch: its last step was not flagged for a snapshot.
    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    model = _model(keras.optimizers.SGD(0.1))
    monitor = GradientMonitor(dead_warning_threshold=None)
    x, y = _data()
    model.fit(x, y, batch_size=4, shuffle=False, verbose=0, callbacks=[Stop(), monitor])
    record = monitor.history[-1]
    assert record["layers"]["h0"]["update_ratio"] is None
    assert record["variables"][model.layers[0].kernel.path]["update_ratio"] is None
    norm = np.sqrt(sum(np.sum(v.numpy().astype(np.float64) ** 2) for v in model.layers[0].trainable_variables))
    assert record["layers"]["h0"]["weight_norm"] == pytest.approx(norm, rel=1e-6)


def test_update_ratio_and_weight_norm_are_scalars_and_columns():
    model = _model(keras.optimizers.SGD(0.1))
    monitor, weights = GradientMonitor(update_freq=3, dead_warning_threshold=None), _Weights()
    _fit(model, monitor, weights)
    record = monitor.history[-1]
    tags = dict(events.scalars(record))
    kernel = model.layers[0].kernel.path
    for key in ("update_ratio", "weight_norm"):
        assert tags[f"{key}/h0"] == record["layers"]["h0"][key]
        assert tags[f"{key}/{kernel}"] == record["variables"][kernel][key]
    row = [r for r in monitor.to_rows() if r["layer"] == "h0"][-1]
    assert row["update_ratio"] == record["layers"]["h0"]["update_ratio"]
    assert row["weight_norm"] == record["layers"]["h0"]["weight_norm"]


def test_update_ratio_with_several_steps_per_execution():
    # Three steps per call of the train function, one record per epoch: the
    # ratio is of the epoch's last step, as a step-by-step fit measures it.
    model = _model(keras.optimizers.SGD(0.1, momentum=0.9))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse", steps_per_execution=3)
    monitor = GradientMonitor(dead_warning_threshold=None)
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
    reference, weights = _model(keras.optimizers.SGD(0.1, momentum=0.9)), _Weights()
    _fit(reference, GradientMonitor(dead_warning_threshold=None), weights, epochs=2)
    assert [r["step"] for r in monitor.history] == [3, 6]
    for record in monitor.history:
        k = record["step"] - 1
        ratio, norm = _expected(weights.before[k], weights.after[k], _paths(reference.layers[0]))
        assert record["layers"]["h0"]["update_ratio"] == pytest.approx(ratio, rel=1e-4)
        assert record["layers"]["h0"]["weight_norm"] == pytest.approx(norm, rel=1e-5)
