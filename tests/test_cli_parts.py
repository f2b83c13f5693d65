"""Unit tests of compare's parts: models, monitor summaries, report rendering, determinism."""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_activations  # noqa: E402
from keras_activations.compare import data as data_lib  # noqa: E402
from keras_activations.compare import models  # noqa: E402
from keras_activations.compare import report as report_lib  # noqa: E402
from keras_activations.compare import run as run_lib  # noqa: E402


@pytest.mark.parametrize(
    "name, init",
    [("relu", "he_normal"), ("elu", "he_normal"), ("prelu", "he_normal"),
     ("selu", "lecun_normal"), ("maxout", "lecun_normal"),
     ("sigmoid", "glorot_uniform"), ("tanh", "glorot_uniform")],
)
def test_initializer_per_activation(name, init):
    choice = models.resolve(name)
    assert choice.initializer == init
    model = models.build_model(choice, (8, 8, 1), 10, depth=2, width=4)
    cls = type(model.get_layer("dense_01").kernel_initializer).__name__
    assert cls.lower().replace("_", "") == init.replace("_", "")


def test_every_known_activation_builds_and_runs():
    x = np.random.default_rng(0).uniform(size=(3, 8, 8, 1)).astype("float32")
    for name in models.known_activations():
        model = models.build_model(models.resolve(name), (8, 8, 1), 10, depth=2, width=6)
        probs = model(x).numpy()
        assert probs.shape == (3, 10), name
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_package_activations_use_the_package_layers():
    assert set(keras_activations.available()) <= set(models.known_activations())
    model = models.build_model(models.resolve("elu"), (8, 8, 1), 10, depth=1, width=4)
    assert isinstance(model.get_layer("act_00"), keras_activations.ELU)


def test_maxout_widens_the_layer_before_it():
    model = models.build_model(models.resolve("maxout"), (8, 8, 1), 10, depth=2,
                               width=8, maxout_pieces=3)
    assert model.get_layer("dense_01").units == 24
    assert model.get_layer("act_01").pieces == 3
    assert model.get_layer("act_01").output.shape[-1] == 8


def test_cnn_prelu_learns_one_slope_per_channel():
    model = models.build_model(models.resolve("prelu"), (8, 8, 1), 10, model="cnn",
                               depth=2, width=5)
    alpha = model.get_layer("act_00").get_weights()[0]
    assert alpha.size == 5


def test_options_and_labels():
    choice = models.resolve("celu", alpha=0.5)
    assert choice.label == "celu(alpha=0.5)"
    layer = models.build_model(choice, (8, 8, 1), 10, depth=1, width=4).get_layer("act_00")
    assert layer.get_config()["alpha"] == 0.5
    with pytest.raises(ValueError, match="'relu' is a Keras activation and takes no options"):
        models.resolve("relu", alpha=1.0)


def test_unknown_activation_message():
    with pytest.raises(models.UnknownActivationError) as info:
        models.resolve("swoosh")
    message = str(info.value)
    assert "unknown activation 'swoosh'" in message
    for name in ("relu", "elu", "prelu", "maxout", "tanh"):
        assert name in message


@pytest.mark.parametrize(
    "kwargs, match",
    [({"depth": 0}, "--depth must be a positive integer, got 0"),
     ({"model": "rnn"}, "--model must be 'mlp' or 'cnn', got 'rnn'"),
     ({"maxout_pieces": 0}, "--maxout-pieces must be a positive integer")],
)
def test_build_model_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.build_model(models.resolve("relu"), (8, 8, 1), 10, **kwargs)


HISTORY = [
    {"step": 10, "epoch": 0, "layers": {
        "dense_00": {"depth": 0, "gradient_norm": 0.02, "gradient_cosine": None},
        "act_00": {"depth": 1, "dead_fraction": 0.25, "activation_mean": 0.5,
                   "activation_std": 1.0, "saturation": 0.1},
        "dense_01": {"depth": 2, "gradient_norm": 2.0, "gradient_cosine": None},
        "act_01": {"depth": 3, "dead_fraction": 0.75, "activation_mean": 0.3,
                   "activation_std": 1.0, "saturation": 0.2},
        "output": {"depth": 4, "gradient_norm": 50.0, "activation_mean": 0.1},
    }},
    {"step": 20, "epoch": 1, "layers": {
        "dense_00": {"depth": 0, "gradient_norm": 0.04, "gradient_cosine": 0.5},
        "act_00": {"depth": 1, "dead_fraction": 0.25, "activation_mean": 0.1,
                   "activation_std": 1.0, "saturation": 0.1},
        "dense_01": {"depth": 2, "gradient_norm": 1.0, "gradient_cosine": 0.1},
        "act_01": {"depth": 3, "dead_fraction": 0.25, "activation_mean": 0.1,
                   "activation_std": 1.0, "saturation": 0.2},
        "output": {"depth": 4, "gradient_norm": float("nan"), "activation_mean": 0.1},
    }},
]


def test_summarize_monitor_numbers():
    summary = run_lib.summarize_monitor(HISTORY)
    # Ratios per record 0.01 and 0.04: median 0.025; the output layer is not hidden.
    assert summary["grad_ratio"] == pytest.approx(0.025)
    assert summary["dead_fraction"] == pytest.approx((0.25 + 0.75 + 0.25 + 0.25) / 4)
    assert summary["activation_mean"] == pytest.approx((0.5 + 0.3 + 0.1 + 0.1) / 4)
    assert summary["gradient_cosine"] == pytest.approx(0.3)
    assert summary["saturation"] == pytest.approx(0.15)
    by_depth = summary["by_depth"]
    assert [e["depth"] for e in by_depth] == [0, 1]
    assert by_depth[0]["gradient_norm"] == pytest.approx(0.03)
    assert by_depth[1]["dead_fraction"] == pytest.approx(0.5)
    assert by_depth[0]["gradient_cosine"] == pytest.approx(0.5)


def test_summarize_empty_history():
    summary = run_lib.summarize_monitor([])
    assert summary["grad_ratio"] is None and summary["by_depth"] == []


def _row(name, val_acc, val_loss, epochs_to=None, dead=None):
    return {"activation": name, "init": "he_normal", "train_loss": 0.1,
            "val_loss": val_loss, "train_accuracy": 0.9, "val_accuracy": val_acc,
            "epochs_to_target": epochs_to, "grad_ratio": 1e-6, "dead_fraction": dead,
            "activation_mean": 0.25, "gradient_cosine": 0.5,
            "seconds_per_epoch": 0.3, "by_depth": [], "metrics": ["loss", "accuracy"]}


def test_best_row_and_markdown_cells():
    rows = [_row("a", 0.9, 0.3, 2), _row("b", 0.95, 0.5), _row("c", 0.95, 0.2, 4, 0.125),
            _row("d", float("nan"), float("nan"))]
    assert report_lib.best_row(rows)["activation"] == "c"  # lowest val loss
    assert report_lib.best_row(rows, "val_accuracy")["activation"] == "b"  # first of the ties
    rows[2]["status"] = "failed"
    assert report_lib.best_row(rows)["activation"] == "a"  # a failed run is never best
    assert report_lib.best_row(rows[3:]) is None
    rows[2]["status"] = "ok"
    table = report_lib.markdown_table(rows, 0.9)
    lines = table.splitlines()
    assert "epochs to 0.9" in lines[0]
    assert lines[2].startswith("| a | he_normal | 0.1000 | 0.3000 | 0.900 | 0.900 | 2 | 1e-06 | n/a | +0.250 |")
    assert "| not reached |" in lines[3]
    assert "| 4 | 1e-06 | 0.125 |" in lines[4]
    assert "| nan |" in lines[5]


def test_same_seed_same_training():
    data = data_lib.load_data("digits", max_examples=200)
    config = run_lib.TrainConfig(depth=2, width=8, epochs=2)
    choice = models.resolve("elu")
    first = run_lib.train_one(choice, data, config, monitor_factory=None, verbose=0)
    keras.utils.set_random_seed(123)  # disturbed in between: train_one reseeds
    second = run_lib.train_one(choice, data, config, monitor_factory=None, verbose=0)
    assert first.history["loss"] == second.history["loss"]
    assert all(math.isfinite(v) for v in first.history["loss"])
    assert first.epochs_to(0.0) == 1 and first.epochs_to(1.01) is None
