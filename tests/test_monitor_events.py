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
    acc = _read(tmp_path)
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
    for name in ("h0", "h1"):
        for key in ("dead_units", "dead_fraction", "saturation", "activation_mean", "activation_std", "gradient_norm"):
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
    acc = _read(tmp_path)
    assert [e.step for e in acc.Tensors("gradient_norm/global")] == [1, 2, 3, 4, 5]
    assert h0.activation is activation and "train_step" not in vars(model)
    assert monitor._program is None  # event file closed
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # trains without it


def test_resume_with_backup_and_restore_has_no_duplicate_steps(tmp_path):
    x, y = _data()
    backup = tmp_path / "backup"
    logs = tmp_path / "logs"

    def fit(model):
        monitor = GradientMonitor(log_dir=logs, update_freq=1)
        model.fit(
            x, y, batch_size=8, epochs=4, shuffle=False, verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(str(backup)), monitor],
        )
        return monitor

    # 4 steps an epoch; the 11th step (epoch 2) is interrupted after the
    # epoch-1 backup, so steps 9 and 10 are written twice without care.
    with pytest.raises(KeyboardInterrupt):
        fit(_model(run_eagerly=True, layer=_Interrupt(11)))
    monitor = fit(_model(run_eagerly=True, layer=_Interrupt(10**9)))
    assert [r["step"] for r in monitor.history] == list(range(9, 17))
    acc = _read(logs)
    assert [e.step for e in acc.Tensors("gradient_norm/global")] == list(range(1, 17))


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


def test_event_templates_equal_protocol_buffers(tmp_path):
    """The byte templates give the values protobuf gives: numbers, shapes,
    plugin metadata on a tag's first value only."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util import tensor_util

    from keras_activations.monitor import events

    encoder = events.Encoder()
    file = events.EventFile(str(tmp_path))
    rows = np.stack([np.linspace(-1, 1, 5)[:-1], np.linspace(-1, 1, 5)[1:], [3.0, 0.0, 1e6, 7.0]], axis=1)
    image = np.zeros((20, 30, 3), np.uint8)
    image[5:10, 2:4] = (214, 39, 40)
    # Step 3's picture goes as indices into a palette (a palette PNG).
    palette = np.array([(255, 255, 255), (214, 39, 40), (31, 119, 180)], np.uint8)
    indices = np.zeros((20, 30), np.uint8)
    indices[5:10, 2:4] = 1
    indices[0, 0] = 2
    images = {1: image, 2: image, 3: palette[indices]}
    for step, value in ((1, 0.25), (2, -3.5e-20), (3, float("inf"))):
        picture = (
            encoder.image("depth_profile", indices, file.seen, palette=palette)
            if step == 3
            else encoder.image("depth_profile", image, file.seen)
        )
        # Step 2 adds a tag: its first value alone carries metadata.
        tags = ("gradient_norm/global",) + (("gradient_norm/d",) if step > 1 else ())
        file.write(step, [
            encoder.scalars(tags, [value, 2.0 * step][: len(tags)], file.seen),
            encoder.histograms(("gradients/d/kernel",), (rows * step)[None], file.seen),
            picture,
        ])
    file.close()
    raw = [event_pb2.Event.FromString(r.numpy()) for r in tf.data.TFRecordDataset(file.path)]
    assert raw[0].file_version == "brain.Event:2"
    for event, step, value in zip(raw[1:], (1, 2, 3), (0.25, -3.5e-20, float("inf"))):
        assert event.step == step
        scalar, *other, hist, img = event.summary.value
        assert tensor_util.make_ndarray(scalar.tensor) == np.float32(value)
        assert [tensor_util.make_ndarray(v.tensor) for v in other] == [2.0 * step] * (step > 1)
        np.testing.assert_array_equal(tensor_util.make_ndarray(hist.tensor), rows * step)
        assert [v.metadata.plugin_data.plugin_name for v in event.summary.value] == {
            1: ["scalars", "histograms", "images"],
            2: ["", "scalars", "", ""],
            3: ["", "", "", ""],
        }[step]
        width, height, png = tensor_util.make_ndarray(img.tensor)
        assert (int(width), int(height)) == (30, 20)
        np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), images[step])
    acc = _read(tmp_path)
    assert [e.step for e in acc.Tensors("gradients/d/kernel")] == [1, 2, 3]


def _step_dead_model():
    """lr 0; `units` fires iff x > 0: a batch of negative x kills all 4."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(4, activation="relu", kernel_initializer="ones", bias_initializer="zeros", name="units"),
        keras.layers.Dense(1, name="out"),
    ], name="net")
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    return model


def _assert_same(a, b):
    """Nested dicts, lists and arrays equal, NaN equal to NaN."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (np.ndarray, float)):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_records_flushed_together_equal_records_flushed_one_by_one(tmp_path, monkeypatch):
    """Queued records get their figures, events and dead-unit warnings
    together: the same numbers as one at a time, each event at its own
    step and time, the warning naming the step that crossed, and `history`
    read in the middle of fit holds every record so far."""
    from keras_activations.monitor import callback

    x = np.concatenate([np.full((8, 1), 1.0), np.full((8, 1), 2.0), np.full((8, 1), -1.0), np.full((8, 1), 3.0)])
    x = x.astype("float32")
    y = np.zeros((32, 1), "float32")
    runs = {}
    for name, (records, seconds) in {"one": (1, 0.0), "together": (1000, 1e12)}.items():
        monkeypatch.setattr(callback, "_FLUSH_RECORDS", records)
        monkeypatch.setattr(callback, "_FLUSH_SECONDS", seconds)
        monitor = GradientMonitor(log_dir=tmp_path / name, update_freq=1, dead_warning_threshold=0.5)
        seen = []

        class Reader(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch == 3:  # with "together", the first flush: records 1-4
                    seen.append([r["step"] for r in monitor.history])

        with pytest.warns(UserWarning, match=r"'units' are dead \(4 of 4\) at step 3\."):
            _step_dead_model().fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[monitor, Reader()])
        assert seen == [[1, 2, 3, 4]]
        runs[name] = (monitor.history, _read(tmp_path / name))
    (one, acc_one), (together, acc_together) = runs["one"], runs["together"]
    assert [r["layers"]["units"]["dead_units"] for r in together] == [0, 0, 4, 0]
    assert len(one) == len(together) == 4
    for a, b in zip(one, together):
        _assert_same(a, b)
    assert set(acc_one.Tags()["tensors"]) == set(acc_together.Tags()["tensors"])
    for tag in acc_one.Tags()["tensors"]:
        events_one, events_together = acc_one.Tensors(tag), acc_together.Tensors(tag)
        assert [e.step for e in events_one] == [e.step for e in events_together]
        for e1, e2 in zip(events_one, events_together):
            assert e1.tensor_proto.SerializeToString() == e2.tensor_proto.SerializeToString()
    times = [e.wall_time for e in acc_together.Tensors("gradient_norm/global")]
    assert times == sorted(times) and len(set(times)) == 4  # each record's own time


def test_encoded_records_with_changing_tags_equal_protocol_buffers():
    """Several records encoded together, their sets of tags changing: each
    record's values under its own tags, and a tag's metadata only on its
    first value in record order (here in the second and fourth records)."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.util import tensor_util

    from keras_activations.monitor import events

    encoder = events.Encoder()
    seen = {"a"}
    tags = ("a", "b", "c")
    values = np.arange(12, dtype=np.float64).reshape(4, 3) + 0.5
    present = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]], bool)
    out = encoder.scalar_rows(tags, values, present, seen)
    assert seen == {"a", "b", "c"}
    for i, data in enumerate(out):
        summary = summary_pb2.Summary.FromString(data)
        assert [v.tag for v in summary.value] == [t for t, p in zip(tags, present[i]) if p]
        assert [float(tensor_util.make_ndarray(v.tensor)) for v in summary.value] == list(values[i][present[i]])
        assert [v.metadata.plugin_data.plugin_name for v in summary.value] == {
            0: [""], 1: ["", "scalars"], 2: [""], 3: ["", "", "scalars"],
        }[i]
