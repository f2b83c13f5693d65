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


# --- Swapping the activations of a user's model ------------------------------------------

from keras_activations.compare import sources  # noqa: E402
from keras_activations.compare import swap  # noqa: E402


def resnet_like(name="resnet"):
    """Conv(relu) -> [Conv -> BN -> ReLU -> Conv -> BN] + shortcut -> ELU -> pool -> Dense(tanh)
    -> LSTM-free head Dense(softmax): every kind of site, an Add and the output layer."""
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inputs)
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(x)
    y = keras.layers.BatchNormalization(name="bn_a")(y)
    y = keras.layers.ReLU(name="relu_a")(y)
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv_b")(y)
    y = keras.layers.BatchNormalization(name="bn_b")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras_activations.ELU(name="block_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(6, activation="tanh", name="dense")(x)
    x = keras.layers.Activation("sigmoid", name="gate")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def test_swap_every_elementwise_activation_layer_by_layer():
    model = resnet_like()
    clone, sites = swap.swap_activations(model, models.resolve("prelu"), seed=3)
    table = {s.layer: (s.kind, s.original, s.swapped, s.reason) for s in sites}
    assert table == {
        "stem": ("argument", "relu", True, None),
        "relu_a": ("layer", "ReLU", True, None),
        "block_out": ("layer", "ELU", True, None),
        "dense": ("argument", "tanh", True, None),
        "gate": ("layer", "sigmoid", True, None),
        "probs": ("argument", "softmax", False, "output layer"),
    }
    kinds = {l.name: type(l).__name__ for l in clone.layers}
    # Arguments: the layer turns linear and a new activation layer follows it.
    assert clone.get_layer("stem").activation is keras.activations.linear
    assert kinds["stem_activation"] == kinds["dense_activation"] == "PReLU"
    # Layers: replaced under the same name; PReLU shares its slope over the spatial axes.
    assert kinds["relu_a"] == kinds["block_out"] == kinds["gate"] == "PReLU"
    assert clone.get_layer("relu_a").get_weights()[0].shape == (1, 1, 4)
    assert clone.get_layer("dense_activation").get_weights()[0].shape == (6,)
    # Five PReLU layers in all, one per swapped site; the softmax output is kept.
    assert sum(k == "PReLU" for k in kinds.values()) == 5
    assert swap.activation_name(clone.get_layer("probs").activation) == "softmax"
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(clone(x).numpy().sum(-1), 1.0, rtol=1e-5)
    # The given model is left as it was.
    assert model.get_layer("stem").activation is keras.activations.relu


def test_swap_reinitializes_hidden_kernels_or_keeps_them():
    model = resnet_like()
    clone, _ = swap.swap_activations(model, models.resolve("selu"), seed=3)
    for name, seed in (("stem", 3), ("conv_a", 4), ("conv_b", 5), ("dense", 6)):
        init = clone.get_layer(name).kernel_initializer
        assert type(init).__name__ == "LecunNormal" and init.seed == seed, name
    # The output layer keeps its own initializer (Glorot uniform).
    assert type(clone.get_layer("probs").kernel_initializer).__name__ == "GlorotUniform"
    again, _ = swap.swap_activations(model, models.resolve("selu"), seed=3)
    np.testing.assert_array_equal(clone.get_layer("conv_a").get_weights()[0],
                                  again.get_layer("conv_a").get_weights()[0])
    kept, _ = swap.swap_activations(model, models.resolve("selu"), keep_init=True)
    for layer in model.layers:
        if layer.weights and layer.name not in ("relu_a", "block_out", "gate"):
            for a, b in zip(layer.get_weights(), kept.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)


def test_swap_sequential_recurrent_and_exclude():
    model = keras.Sequential([
        keras.Input((5, 3)),
        keras.layers.LSTM(4, return_sequences=True, name="lstm"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(6, activation="relu", name="hidden"),
        keras.layers.Dense(6, activation="elu", name="hidden2"),
        keras.layers.Dense(1, activation="sigmoid", name="out"),
    ], name="seq")
    clone, sites = swap.swap_activations(model, models.resolve("tanh"), exclude=("hidden2",))
    assert [(s.layer, s.swapped, s.reason) for s in sites] == [
        ("lstm", False, "recurrent layer (gates and cell kept)"),
        ("hidden", True, None),
        ("hidden2", False, "excluded"),
        ("out", False, "output layer"),
    ]
    lstm = clone.get_layer("lstm")
    assert swap.activation_name(lstm.cell.recurrent_activation) == "sigmoid"
    assert swap.activation_name(clone.get_layer("hidden_activation").activation) == "tanh"
    assert swap.activation_name(clone.get_layer("hidden2").activation) == "elu"
    assert clone(np.zeros((2, 5, 3), "float32")).shape == (2, 1)
    # Unbuilt Sequential models are built from the data's shape.
    unbuilt = keras.Sequential([keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])
    clone, sites = swap.swap_activations(unbuilt, models.resolve("elu"), input_shape=(4,))
    assert [s.swapped for s in sites] == [True]


class Scale(keras.layers.Layer):
    """A custom layer whose get_config misses its argument."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def call(self, x):
        return x * self.k


def with_custom_layer():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(Scale(2.0)(x)))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2, activation="relu")

    def call(self, x):
        return self.dense(x)


@pytest.mark.parametrize(
    "model, choice, match",
    [
        (lambda: resnet_like(), "maxout", "maxout as a candidate needs a builder"),
        (lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
                                   keras.layers.Dense(2, activation="softmax")]),
         "elu", "has no activation to swap"),
        (lambda: Subclassed(), "elu", "is a subclassed keras.Model"),
        (with_custom_layer, "elu", "layer 'scale' \\(Scale\\) cannot be re-created from its get_config"),
    ],
)
def test_swap_errors(model, choice, match):
    with pytest.raises(swap.ModelError, match=match):
        swap.swap_activations(model(), models.resolve(choice))


@pytest.mark.parametrize(
    "spec, match",
    [
        ("no_such_module_xyz:build", "cannot import 'no_such_module_xyz' \\(ModuleNotFoundError"),
        ("keras_activations.compare.models:no_such", "has no 'no_such'"),
        ("rnn", "is not 'mlp', 'cnn', a .keras file or module:function"),
        ("missing.keras", "no such .keras file"),
    ],
)
def test_model_source_errors(spec, match):
    with pytest.raises(sources.ModelError, match=match):
        sources.resolve_source(spec)


def test_compile_settings_are_reused_or_inferred():
    data = data_lib.from_arrays(np.zeros((8, 8, 8, 1)), np.arange(8) % 3)
    model = resnet_like()
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy",
                  metrics=["sparse_categorical_accuracy"])
    config = run_lib.TrainConfig()
    built = sources.ModelSource(model, "m").build(models.resolve("elu"), data, config)
    compiled = sources.compile_model(built, data, config, run_lib.make_optimizer)
    assert type(compiled.optimizer).__name__ == "Adam"
    assert float(compiled.optimizer.learning_rate) == pytest.approx(0.005)
    assert compiled.optimizer is not model.optimizer
    # Uncompiled: SGD from the config, the loss from the labels and the output (a softmax).
    built = sources.ModelSource(resnet_like(), "m").build(models.resolve("elu"), data, config)
    compiled = sources.compile_model(built, data, config, run_lib.make_optimizer)
    assert type(compiled.optimizer).__name__ == "SGD"
    assert isinstance(compiled.loss, keras.losses.SparseCategoricalCrossentropy)
    assert compiled.loss.get_config()["from_logits"] is False
    reg = data_lib.from_arrays(np.zeros((8, 3)), np.zeros(8, "float32"))
    assert sources.inferred_loss(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]),
                                 reg) == ("mean_squared_error", ["mean_absolute_error"])


def test_builders_with_and_without_the_activation():
    data = data_lib.from_arrays(np.zeros((8, 8, 8, 1)), np.arange(8) % 3)
    config = run_lib.TrainConfig(seed=5)
    calls = []

    def build():
        calls.append(None)
        return resnet_like()

    source = sources.resolve_source(build)
    assert not source.takes_activation
    built = source.build(models.resolve("elu"), data, config)
    assert [s["layer"] for s in built.sites if s["swapped"]] == [
        "stem", "relu_a", "block_out", "dense", "gate"]
    assert type(built.model.get_layer("relu_a")).__name__ == "ELU"
    source.build(models.resolve("elu"), data, config)
    assert len(calls) == 2  # called once per candidate
    with pytest.raises(sources.ModelError, match="takes none"):
        source.check([models.resolve("maxout")], data)

    seen = []

    def build_with(activation):
        seen.append(activation)
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Flatten()(inputs)
        x = keras.layers.Dense(4, name="hidden")(x)
        x = keras_activations.compare.activation_layer(activation, name="act")(x)
        return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))

    source = sources.resolve_source(build_with)
    built = source.build(models.parse("celu:alpha=0.5"), data, config)
    assert seen == ["celu:alpha=0.5"]
    assert built.model.get_layer("act").get_config()["alpha"] == 0.5
    # The hidden kernel is re-drawn from the candidate's initializer, seeded: He normal, seed 5.
    expected = keras.initializers.HeNormal(seed=5)((64, 4)).numpy()
    np.testing.assert_allclose(built.model.get_layer("hidden").kernel.numpy(), expected)
    assert built.hidden == {"hidden": 0, "act": 0}


def test_a_nested_model_is_listed_not_entered():
    block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="relu")],
                             name="block")
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, activation="relu", name="first")(inputs)
    outputs = keras.layers.Dense(1, name="out")(block(x))
    clone, sites = swap.swap_activations(keras.Model(inputs, outputs), models.resolve("elu"))
    assert [(s.layer, s.kind, s.swapped) for s in sites] == [
        ("first", "argument", True), ("block", "model", False)]
    assert "nested model" in sites[1].reason
    assert swap.activation_name(clone.get_layer("block").layers[-1].activation) == "relu"
