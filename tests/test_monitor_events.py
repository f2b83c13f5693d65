"""GradientMonitor: event files, faults, resume and saving."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import keras
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from keras_activations import GradientMonitor


def _model(run_eagerly=False, layer=None):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((4,)), keras.layers.Dense(6, activation="relu", name="h0")]
    if layer is not None:
        layers.append(layer)
    layers += [keras.layers.Dense(6, activation="sigmoid", name="h1"), keras.layers.Dense(1, name="out")]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", run_eagerly=run_eagerly)
    return model


def _data(n=32):
    rng = np.random.RandomState(1)
    return rng.rand(n, 4).astype("float32"), rng.randn(n, 1).astype("float32")


def _read(log_dir):
    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0})
    acc.Reload()
    return acc


def test_event_files_hold_every_histogram_and_equal_history(tmp_path):
    model = _model()
    x, y = _data()
    monitor = GradientMonitor(log_dir=tmp_path, update_freq=2)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
    acc = _read(tmp_path / "train")  # Keras's training run of log_dir
    tags = set(acc.Tags()["tensors"])
    steps = [r["step"] for r in monitor.history]
    assert steps == [2, 4, 6, 8]
    for v in model.trainable_variables:
        events = acc.Tensors(f"gradients/{v.path}")
        assert [e.step for e in events] == steps
        for event, record in zip(events, monitor.history):
            rows = tf.make_ndarray(event.tensor_proto)
            assert rows.shape == (30, 3)
            assert rows[:, 2].sum() == np.prod(v.shape)  # one step per record
            hist = record["variables"][v.path]["histogram"]
            np.testing.assert_array_equal(rows[:, 2], hist["counts"])
            np.testing.assert_allclose(rows[:, 0], hist["edges"][:-1])
            norm = tf.make_ndarray(acc.Tensors(f"gradient_norm/{v.path}")[steps.index(record["step"])].tensor_proto)
            np.testing.assert_allclose(norm, record["variables"][v.path]["norm"], rtol=1e-6)
    # h0 is a ReLU (an inactive fraction), h1 a sigmoid (a saturation).
    assert "inactive_fraction/h0" in tags and "saturation/h0" not in tags
    assert "saturation/h1" in tags and "inactive_fraction/h1" not in tags
    shares = {"h0": "inactive_fraction", "h1": "saturation"}
    for name in ("h0", "h1"):
        for key in ("dead_units", "dead_fraction", shares[name], "activation_mean", "activation_std", "gradient_norm"):
            events = acc.Tensors(f"{key}/{name}")
            assert [e.step for e in events] == steps
            written = [float(tf.make_ndarray(e.tensor_proto)) for e in events]
            np.testing.assert_allclose(written, [r["layers"][name][key] for r in monitor.history], rtol=1e-6)
        assert [e.step for e in acc.Tensors(f"activations/{name}")] == steps
    assert [e.step for e in acc.Tensors("gradient_cosine/h0")] == steps[1:]
    global_norm = [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("gradient_norm/global")]
    np.testing.assert_allclose(global_norm, [r["global_norm"] for r in monitor.history], rtol=1e-6)
    assert f"nonfinite_gradients/{model.get_layer('h0').kernel.path}" in tags
    assert [e.step for e in acc.Tensors("depth_profile")] == steps


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"update_freq": 0}, "update_freq"),
        ({"update_freq": "batch"}, "update_freq"),
        ({"bins": 0}, "bins"),
        ({"dead_tolerance": -1.0}, "dead_tolerance"),
        ({"saturation_tolerance": float("nan")}, "saturation_tolerance"),
        ({"dead_warning_threshold": 2}, "dead_warning_threshold"),
    ],
)
def test_bad_arguments_name_argument_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientMonitor(**kwargs)


def test_errors_before_the_first_step(tmp_path):
    x, y = _data()
    blocker = tmp_path / "file"
    blocker.write_text("")
    model = _model()
    before = [w.numpy() for w in model.weights]
    with pytest.raises(PermissionError, match="log_dir"):
        model.fit(x, y, verbose=0, callbacks=[GradientMonitor(log_dir=blocker / "sub")])
    with pytest.raises(ValueError, match="'nope'"):
        model.fit(x, y, verbose=0, callbacks=[GradientMonitor(layers=["nope"])])
    assert int(model.optimizer.iterations.numpy()) == 0
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, b.numpy())
    uncompiled = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises((RuntimeError, ValueError), match="compile"):
        uncompiled.fit(x, y, verbose=0, callbacks=[GradientMonitor()])


class _Interrupt(keras.layers.Layer):
    """Raises KeyboardInterrupt in the training step number `at` (eager)."""

    def __init__(self, at, **kwargs):
        super().__init__(**kwargs)
        self.at = at
        self.calls = 0

    def call(self, x, training=None):
        if training and tf.executing_eagerly():
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
        return x


def test_interrupted_fit_keeps_records_and_undoes_patches(tmp_path):
    model = _model(run_eagerly=True, layer=_Interrupt(6))
    h0 = model.get_layer("h0")
    activation = h0.activation
    x, y = _data()
    monitor = GradientMonitor(log_dir=tmp_path, update_freq=1)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
    assert [r["step"] for r in monitor.history] == [1, 2, 3, 4, 5]
    acc = _read(tmp_path / "train")  # Keras's training run of log_dir
    assert [e.step for e in acc.Tensors("gradient_norm/global")] == [1, 2, 3, 4, 5]
    assert h0.activation is activation and "train_step" not in vars(model)
    assert monitor._events is None  # event file closed
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # trains without it


@pytest.mark.parametrize(
    "update_freq, kept, written",
    [(1, list(range(9, 17)), list(range(1, 17))), ("epoch", [12, 16], [0, 1, 2, 3])],
)
def test_resume_with_backup_and_restore_has_no_duplicate_steps(tmp_path, update_freq, kept, written):
    x, y = _data()
    backup = tmp_path / "backup"
    logs = tmp_path / "logs"

    def fit(model):
        monitor = GradientMonitor(log_dir=logs, update_freq=update_freq)
        model.fit(
            x, y, batch_size=8, epochs=4, shuffle=False, verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(str(backup)), monitor],
        )
        return monitor

    # 4 steps an epoch; the 11th step (epoch 2) is interrupted after the
    # epoch-1 backup, so steps 9 and 10 (per step; per epoch: epoch 2's
    # record of the interrupted fit) are written twice without care.
    with pytest.raises(KeyboardInterrupt):
        fit(_model(run_eagerly=True, layer=_Interrupt(11)))
    monitor = fit(_model(run_eagerly=True, layer=_Interrupt(10**9)))
    assert [r["step"] for r in monitor.history] == kept
    acc = _read(logs / "train")
    assert [e.step for e in acc.Tensors("gradient_norm/global")] == written


def test_saved_model_loads_and_trains_without_the_monitor(tmp_path):
    model = _model()
    x, y = _data()
    path = tmp_path / "model.keras"
    model.fit(
        x, y, batch_size=8, epochs=1, verbose=0,
        callbacks=[GradientMonitor(update_freq=1), keras.callbacks.ModelCheckpoint(str(path), save_freq=2)],
    )
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("h0").get_config()["activation"] == "relu"
    assert len(loaded.weights) == len(model.weights)
    loaded.fit(x, y, epochs=1, verbose=0)


def test_every_value_of_every_record_is_in_the_event_file(tmp_path):
    # Records whose set of values changes (no cosine in the first record, a
    # frozen layer's norm missing): each event holds exactly the record's
    # scalars and histograms, with plugin metadata TensorBoard can read.
    from keras_activations.monitor import events

    model = _model()
    x, y = _data()
    monitor = GradientMonitor(log_dir=tmp_path, update_freq=1, dead_warning_threshold=None)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    acc = _read(tmp_path / "train")  # Keras's training run of log_dir
    assert acc.Tags()["images"] == ["depth_profile"] or "depth_profile" in acc.Tags()["tensors"]
    for record in monitor.history:
        scalars = events.scalars(record)
        assert scalars and all(np.isfinite(v) for _, v in scalars)
        for tag, value in scalars:
            (event,) = [e for e in acc.Tensors(tag) if e.step == record["step"]]
            assert float(tf.make_ndarray(event.tensor_proto)) == np.float32(value)
        for tag, hist in events.histograms(record):
            (event,) = [e for e in acc.Tensors(tag) if e.step == record["step"]]
            rows = tf.make_ndarray(event.tensor_proto)
            np.testing.assert_array_equal(rows[:, 2], hist["counts"])
            np.testing.assert_array_equal(rows[:, 0], hist["edges"][:-1])
            np.testing.assert_array_equal(rows[:, 1], hist["edges"][1:])
    assert "gradient_cosine/h0" not in [t for t, _ in events.scalars(monitor.history[0])]
    assert "gradient_cosine/h0" in [t for t, _ in events.scalars(monitor.history[1])]
