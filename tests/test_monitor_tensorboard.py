"""GradientMonitor in TensorBoard: the depth-profile picture, the custom-scalars
layout, and the run and steps shared with `keras.callbacks.TensorBoard`."""

import io
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import keras
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from keras_activations import GradientMonitor
from keras_activations.monitor import dashboard
from keras_activations.monitor import events
from keras_activations.monitor import font
from keras_activations.monitor import plots


def _entry(depth, **figures):
    entry = {key: None for key in ("gradient_norm", "gradient_cosine", "units", "dead_units", "dead_fraction",
                                   "saturation", "activation_mean", "activation_std", "activation_histogram")}
    entry["depth"] = depth
    entry.update(figures)
    return entry


def _record(**extra):
    """d1 (weights) then a1 (activation, no weights): one row; d2 has both,
    with no derivative known (no dead fraction) and no mean."""
    layers = {
        "d1": _entry(0, gradient_norm=10.0, **extra),
        "a1": _entry(1, units=4, dead_fraction=0.5, activation_mean=-2.0),
        "d2": _entry(2, gradient_norm=0.1, units=3, **extra),
    }
    return {"step": 7, "epoch": 1, "layers": layers}


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(6, name="d0"),
        keras.layers.Activation("relu", name="a0"),
        keras.layers.Dense(6, activation="sigmoid", name="h1"),
        keras.layers.Dense(1, name="out"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


def _data(n=32):
    rng = np.random.RandomState(1)
    return rng.rand(n, 4).astype("float32"), rng.randn(n, 1).astype("float32")


def _read(run_dir):
    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0}
    )
    acc.Reload()
    return acc


# ---- the picture -----------------------------------------------------------


def test_depth_rows_put_weights_and_their_activation_together():
    rows = plots.depth_rows(
        ["act_in", "d1", "a1", "bn", "a2", "d3", "noop", "d4", "a4", "a5"],
        weighted={"d1", "bn", "d3", "d4"},
        sites={"act_in", "a1", "a2", "d3", "a4", "a5"},
    )
    assert rows == [
        ("act_in", None, "act_in"),  # nothing with weights before it
        ("d1+a1", "d1", "a1"),
        ("bn+a2", "bn", "a2"),  # the preceding layer with weights
        ("d3", "d3", "d3"),  # Dense(activation=...) is one site already
        ("d4+a4", "d4", "a4"),
        ("a5", None, "a5"),  # d4's activation is taken
    ]  # "noop" has neither


def _lines(pixels):
    """`(bases, text levels)` of a picture, as `[line, 16, width]` arrays."""
    ch, _ = font.cell()
    shape = (-1, ch + 3, pixels.shape[1])
    return (pixels // font.LEVELS).reshape(shape), (pixels % font.LEVELS).reshape(shape)


def _text(levels, line, column, chars=10):
    """The text levels of `chars` characters of a line from `column` on."""
    ch, cw = font.cell()
    return levels[line, 1 : 1 + ch, column * cw : (column + chars) * cw]


def _rendered(string, chars=10, align="right"):
    return font.render([string], chars, align)[0]


def test_depth_profile_draws_known_values():
    record = _record()
    pixels = plots.depth_profile(record)
    ch, cw = font.cell()
    assert (ch, cw) == (13, 7)
    # label column of 6 characters ("d1+a1" and "d2" are shorter), then three
    # columns of 10 characters, each after a space (from characters 7, 18, 29);
    # 4 header lines, 2 rows.
    assert pixels.shape == ((4 + 2) * 16, (6 + 3 * 11) * cw)
    bases, levels = _lines(pixels)
    log_x, fraction_x, signed_x = 7 * cw, 18 * cw, 29 * cw
    blue, red, green = plots.COLOR, plots.COLOR + 1, plots.COLOR + 2
    bar = slice(1, 15)  # a bar's pixel rows in its line

    def row(k, x0, length):
        return bases[4 + k, bar, x0 : x0 + length]

    # Norms 10 and 0.1 span 1e-1 .. 1e1: 10 fills the 70-pixel column, 0.1 is 1 pixel.
    assert (row(0, log_x, 70) == blue).all()
    assert (row(1, log_x, 1) == blue).all() and not (row(1, log_x + 1, 69) == blue).any()
    # Dead fraction 0.5 of a1, on d1's row: half the column; d2 has none.
    assert (row(0, fraction_x, 35) == red).all() and not (row(0, fraction_x + 35, 35) == red).any()
    assert not (row(1, fraction_x, 70) == red).any()
    # Mean -2, the largest |mean|: the left half, up to the zero line.
    assert (row(0, signed_x, 35) == green).all()
    assert (bases[4:, :, signed_x + 35] == plots.AXIS).all()
    assert not (row(1, signed_x, 70) == green).any()
    assert (bases[:4] == plots.BG).all()  # header lines: text only

    np.testing.assert_array_equal(_text(levels, 0, 0, 15), _rendered("step 7  epoch 1", 15, "left"))
    np.testing.assert_array_equal(_text(levels, 4, 0, 6), _rendered("d1+a1", 6, "left"))
    np.testing.assert_array_equal(_text(levels, 5, 0, 6), _rendered("d2", 6, "left"))
    np.testing.assert_array_equal(_text(levels, 1, 7), _rendered("gradient", 10, "left"))
    np.testing.assert_array_equal(_text(levels, 2, 7), _rendered("norm", 10, "left"))
    np.testing.assert_array_equal(_text(levels, 3, 7), _rendered("1e-1..1e1"))  # the scales
    np.testing.assert_array_equal(_text(levels, 3, 18), _rendered("0..1"))
    np.testing.assert_array_equal(_text(levels, 3, 29), _rendered("+/-2"))
    np.testing.assert_array_equal(_text(levels, 4, 7), _rendered("1.0e1"))  # values, over their bars
    np.testing.assert_array_equal(_text(levels, 5, 7), _rendered("1.0e-1"))
    np.testing.assert_array_equal(_text(levels, 4, 18), _rendered("0.50"))
    np.testing.assert_array_equal(_text(levels, 5, 18), _rendered("-"))  # missing
    np.testing.assert_array_equal(_text(levels, 4, 29), _rendered("-2.00"))
    np.testing.assert_array_equal(_text(levels, 5, 29), _rendered("-"))
    assert _text(levels, 4, 7).max() == font.LEVELS - 1  # the ink is there
    # Over a bar the text blends towards the ink from the bar's colour.
    np.testing.assert_array_equal(plots.PALETTE[blue * font.LEVELS], (174, 199, 232))
    np.testing.assert_array_equal(plots.PALETTE[blue * font.LEVELS + font.LEVELS - 1], (35, 35, 35))


def test_depth_profile_non_finite_values_and_no_fourth_column():
    record = _record(update_ratio=2e-3)
    record["layers"]["d1"]["gradient_norm"] = float("inf")
    record["layers"]["a1"]["activation_mean"] = float("nan")
    pixels = plots.depth_profile(record)
    ch, cw = font.cell()
    assert pixels.shape[1] == (6 + 3 * 11) * cw  # the update ratio is not drawn: the card's width
    bases, levels = _lines(pixels)
    blue, green, purple = plots.COLOR, plots.COLOR + 2, plots.COLOR + 3
    assert not (bases[4] == blue).any() and not (bases == green).any()  # no bar for inf, nan
    assert (bases[5] == blue).any()  # 0.1, the only finite norm
    assert not (bases == purple).any()
    np.testing.assert_array_equal(_text(levels, 4, 7), _rendered("inf"))
    np.testing.assert_array_equal(_text(levels, 4, 29), _rendered("nan"))


def test_depth_profile_png_decodes_and_fits_a_card():
    # compare's MLP, dense_00 + act_00 ...: ten rows, 336 pixels wide, which
    # TensorBoard's image cards (about 340 pixels) show at their size.
    layers = {}
    for i in range(10):
        layers[f"dense_{i:02d}"] = _entry(2 * i, gradient_norm=10.0 ** -i)
        layers[f"act_{i:02d}"] = _entry(2 * i + 1, units=64, dead_fraction=i / 10, activation_mean=0.1 * i)
    record = {"step": 540, "epoch": 11, "layers": layers}
    pixels = plots.depth_profile(record)
    assert pixels.shape == ((4 + 10) * 16, 336)
    image = Image.open(io.BytesIO(events.png(pixels, plots.PALETTE)))
    assert image.size == (336, (4 + 10) * 16) and image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), plots.PALETTE[pixels])


def test_plot_record_draws_one_bar_per_row():
    import matplotlib

    matplotlib.use("Agg")
    fig = plots.plot_record(_record())
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["gradient norm", "dead fraction", "activation mean"]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["d1+a1", "d2"]
    assert [p.get_width() for p in axes[0].patches] == [10.0, 0.1]
    assert axes[1].patches[0].get_width() == 0.5


# ---- the run, the steps, the pictures in a fit ---------------------------------


def test_monitor_joins_keras_train_run_at_keras_epoch_steps(tmp_path):
    model = _model()
    x, y = _data()
    monitor = GradientMonitor(log_dir=tmp_path, dead_warning_threshold=None)
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path), write_graph=False)
    model.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), verbose=0, callbacks=[monitor, board])
    assert monitor.events_dir == os.path.join(str(tmp_path), "train")
    assert sorted(os.listdir(tmp_path)) == ["train", "validation"]
    files = sorted(os.listdir(tmp_path / "train"))
    ours = [f for f in files if f.endswith(events.SUFFIX)]
    assert len(ours) == 1 and len(files) == 2 and files[0] != files[1]  # one file each
    acc = _read(tmp_path / "train")
    keras_steps = [e.step for e in acc.Tensors("epoch_loss")]
    assert keras_steps == [0, 1, 2]
    for tag in ("gradient_norm/global", "gradient_norm/d0", "dead_fraction/a0", "activation_mean/h1"):
        assert [e.step for e in acc.Tensors(tag)] == keras_steps, tag
    assert [r["step"] for r in monitor.history] == [4, 8, 12]  # history keeps training steps
    assert [e.step for e in acc.Tensors("depth_profile")] == [0, 1, 2]
    assert "epoch_loss" in _read(tmp_path / "validation").Tags()["tensors"]


def test_batch_records_are_at_keras_batch_steps(tmp_path):
    model = _model()
    x, y = _data()
    monitor = GradientMonitor(log_dir=tmp_path, update_freq=2, dead_warning_threshold=None)
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path), write_graph=False, update_freq=2)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor, board])
    acc = _read(tmp_path / "train")
    assert [e.step for e in acc.Tensors("batch_loss")] == [2, 4, 6, 8]
    assert [e.step for e in acc.Tensors("gradient_norm/d0")] == [2, 4, 6, 8]


def test_subdir_none_writes_in_log_dir(tmp_path):
    model = _model()
    x, y = _data()
    monitor = GradientMonitor(log_dir=tmp_path, subdir=None, dead_warning_threshold=None)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    assert [f.endswith(events.SUFFIX) for f in os.listdir(tmp_path)] == [True]
    with pytest.raises(ValueError, match="subdir"):
        GradientMonitor(subdir="/abs")
    with pytest.raises(ValueError, match="write_images"):
        GradientMonitor(write_images=0)


@pytest.mark.parametrize(
    "write_images, epochs, pictured",
    [
        (True, 12, [1, 3, 5, 7, 9, 11]),  # 12 records: every 2nd, at most 10
        (True, 3, [0, 1, 2]),
        (2, 3, [1, 2]),  # the 2nd record, and the fit's last (alone, at close)
        (False, 2, []),
    ],
)
def test_pictures_spread_over_the_fit_with_the_last(tmp_path, write_images, epochs, pictured):
    model = _model()
    x, y = _data(8)
    monitor = GradientMonitor(log_dir=tmp_path, write_images=write_images, dead_warning_threshold=None)
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[monitor])
    acc = _read(tmp_path / "train")
    shown = acc.Tensors("depth_profile") if pictured else []
    assert [e.step for e in shown] == pictured
    assert [e.step for e in acc.Tensors("gradient_norm/global")] == list(range(epochs))  # each once
    rows = monitor._profile_rows()
    assert rows == [("d0+a0", "d0", "a0"), ("h1", "h1", "h1"), ("out", "out", None)]
    for event in shown:
        width, height, data = tf.make_ndarray(event.tensor_proto)
        record = monitor.history[event.step]
        expected = plots.PALETTE[plots.depth_profile(record, rows)]
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert (int(width), int(height)) == (expected.shape[1], expected.shape[0])
        np.testing.assert_array_equal(decoded, expected)


# ---- the custom-scalars layout ----------------------------------------------------


def _layout(acc):
    (event,) = acc.Tensors(dashboard.TAG)
    assert event.step == 0
    return layout_pb2.Layout.FromString(tf.make_ndarray(event.tensor_proto).item())


def test_custom_scalars_charts_match_the_tags_written(tmp_path):
    model = _model()
    x, y = _data()
    monitor = GradientMonitor(log_dir=tmp_path, dead_warning_threshold=None)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor])
    acc = _read(tmp_path / "train")
    layout = _layout(acc)
    assert layout == dashboard.layout()
    layers, variables = layout.category
    assert (layers.title, variables.title) == (dashboard.LAYERS_TITLE, dashboard.VARIABLES_TITLE)
    charts = {c.title: list(c.multiline.tag) for c in layers.chart}
    assert list(charts)[:5] == [
        "gradient norm, global", "gradient norm", "dead fraction", "update ratio", "activation mean"
    ]
    from keras_activations.monitor.record import LAYER_SCALARS

    assert set(charts) >= {k.replace("_", " ") for k in LAYER_SCALARS}
    tags = set(acc.Tags()["tensors"])

    def matching(title, chart_list):
        (regex,) = chart_list[title]
        return {t for t in tags if re.match(regex, t)}  # as TensorBoard's plugin matches

    assert matching("gradient norm, global", charts) == {"gradient_norm/global"}
    assert matching("gradient norm", charts) == {"gradient_norm/d0", "gradient_norm/h1", "gradient_norm/out"}
    assert matching("dead fraction", charts) == {"dead_fraction/a0", "dead_fraction/h1"}
    assert matching("activation mean", charts) == {"activation_mean/a0", "activation_mean/h1"}
    assert matching("update ratio", charts) == {t for t in tags if t.startswith("update_ratio/") and t.count("/") == 1}
    by_variable = {c.title: list(c.multiline.tag) for c in variables.chart}
    paths = {v.path for v in model.trainable_variables}
    assert matching("gradient norm", by_variable) == {f"gradient_norm/{p}" for p in paths}
    assert matching("nonfinite gradients", by_variable) == {f"nonfinite_gradients/{p}" for p in paths}
