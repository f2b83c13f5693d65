"""Tests of `keras-activations compare` (in-process through `cli.main`)."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from keras_activations import cli  # noqa: E402

ACTIVATIONS = ["relu", "sigmoid", "tanh"]
EPOCHS = 2
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """One small comparison (real GradientMonitor) shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("compare") / "run"
    mp = pytest.MonkeyPatch()
    try:
        import io

        stdout = io.StringIO()
        mp.setattr(sys, "stdout", stdout)
        rc = cli.main([
            "compare", "--activations", ",".join(ACTIVATIONS),
            "--depth", "6", "--width", "16", "--epochs", str(EPOCHS),
            "--max-examples", "400", "--learning-rate", "0.05",
            "--out", str(out), "--quiet",
        ])
    finally:
        mp.undo()
    return rc, out, stdout.getvalue()


def test_compare_succeeds_and_prints_table_and_next_step(comparison):
    rc, out, stdout = comparison
    assert rc == 0
    assert "| activation | init | train loss" in stdout
    for name in ACTIVATIONS:
        assert f"| {name} |" in stdout
    assert "relu: init he_normal (He normal, for rectifiers)" in stdout
    assert "sigmoid: init glorot_uniform" in stdout
    assert f"tensorboard --logdir {out / 'tensorboard'}" in stdout
    assert "best_model.keras" in stdout


def test_report_json_contents(comparison):
    _, out, _ = comparison
    report = json.loads((out / "report.json").read_text())
    assert [r["activation"] for r in report["runs"]] == ACTIVATIONS
    assert report["config"]["depth"] == 6 and report["config"]["epochs"] == EPOCHS
    assert report["data"]["name"] == "digits"
    assert (report["data"]["num_train"], report["data"]["num_validation"]) == (400, 100)
    inits = {r["activation"]: r["init"] for r in report["runs"]}
    assert inits == {
        "relu": "he_normal", "sigmoid": "glorot_uniform", "tanh": "glorot_uniform"
    }
    for row in report["runs"]:
        assert len(row["history"]["loss"]) == EPOCHS
        assert len(row["epoch_seconds"]) == EPOCHS
        assert 0.0 <= row["val_accuracy"] <= 1.0
        assert row["val_loss"] > 0
        assert [e["depth"] for e in row["by_depth"]] == list(range(6))
        assert row["grad_ratio"] > 0
    best = min(report["runs"], key=lambda r: r["val_loss"])
    assert report["best_by"] == "val_loss" and report["best"] == best["activation"]
    rows = {r["activation"]: r for r in report["runs"]}
    # The deep sigmoid net's gradients vanish toward the input; ReLU's do not.
    assert rows["sigmoid"]["grad_ratio"] < 0.1 < rows["relu"]["grad_ratio"]
    # Only ReLU can die; sigmoid's and tanh's derivatives are never 0.
    assert 0.0 <= rows["relu"]["dead_fraction"] <= 1.0
    assert rows["sigmoid"]["dead_fraction"] == rows["tanh"]["dead_fraction"] == 0.0
    # Bias shift: ReLU's hidden outputs are positive on average, tanh's centered.
    assert rows["relu"]["activation_mean"] > 0.2
    assert abs(rows["tanh"]["activation_mean"]) < 0.2


def test_report_md_and_figures(comparison):
    _, out, _ = comparison
    md = (out / "report.md").read_text()
    assert md.startswith("# keras-activations compare")
    assert "| activation | init | train loss | val loss | train acc | val acc |" in md
    assert "epochs to 0.9" in md
    assert "## Gradient norm by depth" in md
    for name in ACTIVATIONS:
        assert f"| {name} | " in md
    for figure in ("loss_curves", "gradient_norm_by_depth", "dead_fraction_by_depth"):
        data = (out / f"{figure}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_tensorboard_runs_overlay(comparison):
    # One run per activation; its train subdirectory holds Keras's curves and
    # the monitor's figures at the same (epoch) steps, and the custom-scalars
    # layout whose per-layer charts gather every hidden layer of every run.
    import re

    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    from keras_activations.monitor import dashboard

    _, out, _ = comparison
    runs = sorted(p.name for p in (out / "tensorboard").iterdir() if p.is_dir())
    assert runs == sorted(ACTIVATIONS)
    hidden = {f"dense_{i:02d}" for i in range(6)}
    for name in ACTIVATIONS:
        run = out / "tensorboard" / name
        assert {"train", "validation"} <= {p.name for p in run.iterdir()}
        files = sorted(p.name for p in (run / "train").iterdir())
        assert len(files) == 2 and sum(f.endswith(".gradient_monitor") for f in files) == 1, files
        acc = event_accumulator.EventAccumulator(str(run / "train"), size_guidance={"tensors": 0})
        acc.Reload()
        steps = list(range(EPOCHS))
        assert [e.step for e in acc.Tensors("epoch_loss")] == steps
        assert [e.step for e in acc.Tensors("gradient_norm/global")] == steps
        (event,) = acc.Tensors(dashboard.TAG)
        layout = layout_pb2.Layout.FromString(tf.make_ndarray(event.tensor_proto).item())
        assert layout == dashboard.layout()
        (chart,) = [c for c in layout.category[0].chart if c.title == "gradient norm"]
        tags = acc.Tags()["tensors"]
        assert {t for t in tags if re.match(chart.multiline.tag[0], t)} == {f"gradient_norm/{h}" for h in hidden}
        assert [e.step for e in acc.Tensors("depth_profile")] == steps


def test_best_model_keras_and_savedmodel_agree(comparison):
    _, out, _ = comparison
    report = json.loads((out / "report.json").read_text())
    model = keras.models.load_model(out / "best_model.keras")
    assert model.name == f"mlp_{report['best']}"
    x = np.random.default_rng(0).uniform(size=(5, 8, 8, 1)).astype("float32")
    served = tf.saved_model.load(str(out / "best_model_savedmodel" / "1"))
    np.testing.assert_allclose(
        served.serve(tf.constant(x)).numpy(), model.predict(x, verbose=0),
        rtol=1e-5, atol=1e-6,
    )
    assert "tf.saved_model.load" in report["load"]


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unknown_activation_lists_known_ones(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["compare", "--activations", "relu,swoosh", "--out", str(out)])
    assert rc == 2
    line = _error_line(capsys)
    assert line.startswith("keras-activations: error: unknown activation 'swoosh'")
    assert "known:" in line and "relu" in line and "tanh" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "--activations is empty"),
        ("relu,tanh,relu", "--activations repeats relu"),
        ("celu:alpha=0.5,celu:alpha=0.5", "--activations repeats celu(alpha=0.5)"),
        ("celu:alpha", "bad option 'alpha' in 'celu:alpha'; write name:argument=value"),
        ("celu:alpha=big", "option 'alpha' of 'celu' must be a number, got 'big'"),
        ("celu:beta=1", "celu(beta=1.0) is not valid"),
        ("celu:alpha=-1", "celu(alpha=-1.0) is not valid"),
        ("relu:alpha=1", "'relu' is a Keras activation and takes no options"),
        ("maxout:k=3", "its pieces are set by --maxout-pieces"),
    ],
)
def test_bad_activation_lists(tmp_path, capsys, value, message):
    rc = cli.main(["compare", "--activations", value, "--out", str(tmp_path / "o")])
    assert rc == 2
    assert message in _error_line(capsys)


def test_nonempty_out_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("old")
    (out / "notes.txt").write_text("mine")
    args = ["compare", "--activations", "tanh", "--depth", "1", "--width", "4",
            "--epochs", "1", "--max-examples", "64", "--out", str(out),
            "--quiet", "--no-export"]
    rc = cli.main(args)
    assert rc == 2
    line = _error_line(capsys)
    assert f"--out '{out}' exists and is not empty" in line and "--overwrite" in line
    assert (out / "report.md").read_text() == "old"

    assert cli.main(args + ["--overwrite"]) == 0
    assert (out / "report.md").read_text().startswith("# keras-activations compare")
    assert (out / "notes.txt").read_text() == "mine"  # not ours: left alone
    assert not (out / "best_model.keras").exists()  # --no-export


def test_dataset_not_available_offline_says_how_to_download(tmp_path, capsys):
    data_dir = tmp_path / "tfds"
    rc = cli.main(["compare", "--dataset", "fashion_mnist", "--data-dir",
                   str(data_dir), "--activations", "relu",
                   "--out", str(tmp_path / "out")])
    assert rc == 2
    line = _error_line(capsys)
    assert "'fashion_mnist' is not prepared" in line
    assert f"tfds build fashion_mnist --data_dir {data_dir}" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--depth", "0"], "--depth: expected a positive integer, got 0"),
        (["--learning-rate", "-1"], "--learning-rate: expected a positive number"),
        (["--target-accuracy", "1.5"], "--target-accuracy: expected a number in (0, 1]"),
        (["--model", "rnn"], "--model 'rnn' is not 'mlp', 'cnn', a .keras file or module:function"),
        (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
        (["--learning-rate", "nan"], "argument --learning-rate: expected a positive number, got nan"),
        (["--learning-rate", "inf"], "expected a positive number, got inf"),
        (["--momentum", "nan"], "argument --momentum: expected a number >= 0"),
        (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
        (["--image-size", "big"], "expected HEIGHTxWIDTH"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["--overwrite", "--resume"], "--overwrite and --resume exclude each other"),
    ],
)
def test_bad_numbers_and_choices(tmp_path, capsys, args, message):
    """One line on stderr, no usage block, exit 2; nothing written."""
    rc = cli.main(["compare", "--out", str(tmp_path / "o")] + args)
    assert rc == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("under", ["somefile/sub", "somefile/a/b", "somefile"])
def test_out_under_a_regular_file(tmp_path, capsys, under):
    (tmp_path / "somefile").write_text("x")
    rc = cli.main(["compare", "--activations", "relu", "--out", str(tmp_path / under)])
    assert rc == 2
    line = _error_line(capsys)
    assert "is a file, not a directory" in line and "--out" in line


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "compare" in capsys.readouterr().err


def test_list_shows_activations_and_inits(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: line.split() for line in lines}
    assert table["relu"][-1] == "he_normal"
    assert table["tanh"][-1] == "glorot_uniform"


def test_cnn_on_a_tfds_dataset(tmp_path, capsys):
    out = tmp_path / "out"
    with tfds.testing.mock_data(num_examples=48):
        rc = cli.main([
            "compare", "--dataset", "mnist", "--data-dir", str(tmp_path / "tfds"),
            "--model", "cnn", "--activations", "relu", "--depth", "3",
            "--width", "4", "--epochs", "1", "--batch-size", "16",
            "--out", str(out), "--quiet", "--no-export",
        ])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["name"] == "mnist"
    assert report["data"]["input_shape"] == [28, 28, 1]
    assert report["config"]["model"] == "cnn"
    assert [len(r["by_depth"]) for r in report["runs"]] == [3]


def test_activation_options_are_parsed_and_labelled():
    choices = cli.parse_activations(" elu , celu:alpha=0.5,leaky_relu:negative_slope=0.2")
    assert [c.label for c in choices] == [
        "elu", "celu(alpha=0.5)", "leaky_relu(negative_slope=0.2)"
    ]
    assert [c.slug for c in choices] == [
        "elu", "celu_alpha_0_5", "leaky_relu_negative_slope_0_2"
    ]
    assert choices[1].options == (("alpha", 0.5),)


# --- The user's model and data, the Python API, surviving runs ---------------------------

import io  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import keras_activations  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMINGS = ("seconds_per_epoch", "epoch_seconds")


def small_functional():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs, name="small")
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(3, name="top3")])
    return model


def _digits(n=160):
    from keras_activations.compare import data as data_lib

    x, y = data_lib.load_data("digits").train_arrays()
    return x[:n], y[:n]


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@pytest.fixture(scope="module")
def api_runs(tmp_path_factory):
    """The same compiled functional model compared twice (reproducibility), from Python."""
    root = tmp_path_factory.mktemp("api")
    x, y = _digits()
    results = []
    for name in ("a", "b"):
        results.append(keras_activations.compare(
            small_functional(), (x, y), activations=["relu", "elu"], epochs=1,
            out=str(root / name), verbose=0, batch_size=32, stream=io.StringIO()))
    return root, results


def test_api_result_table_best_histories_paths(api_runs):
    root, (result, _) = api_runs
    assert isinstance(result, keras_activations.compare.ComparisonResult)
    assert json.loads(json.dumps(result)) == json.loads((root / "a" / "report.json").read_text())
    rows = {r["activation"]: r for r in result.runs}
    assert list(rows) == ["relu", "elu"] and result.partial is False
    # The compiled settings are reused: Adam 0.01 and both compiled metrics in the table.
    assert rows["elu"]["optimizer"] == "adam"
    assert rows["elu"]["learning_rate"] == pytest.approx(0.01)
    assert set(rows["elu"]["metrics"]) == {"accuracy", "loss", "top3"}
    table = result.table(print_=False)
    assert "| train top3 | val top3 |" in table and "| val acc |" in table
    assert result.best == min(result.runs, key=lambda r: r["val_loss"])["activation"]
    assert result.best_by("val_accuracy") in rows
    assert len(result.histories["elu"]["val_loss"]) == 1
    assert set(result.paths) >= {"report_json", "report_md", "tensorboard", "best_model_keras"}
    # The swaps, layer by layer: conv's argument, the ReLU layer, hidden's argument.
    assert [(s["layer"], s["kind"], s["original"]) for s in rows["elu"]["swaps"]] == [
        ("conv", "argument", "relu"), ("relu", "layer", "ReLU"), ("hidden", "argument", "relu")]
    md = (root / "a" / "report.md").read_text()
    assert "## Swapped activations" in md and "| out | argument | softmax | no: output layer |" in md
    # The monitor watched the hidden layers: per-depth figures, rows and full histories.
    assert [e["depth"] for e in rows["elu"]["by_depth"]] == [0, 1, 2]
    assert rows["elu"]["monitor"] and {"layer", "gradient_norm"} <= set(rows["elu"]["monitor"][0])
    assert result.monitor_histories["elu"][0]["layers"]
    # GradientMonitor's findings, JSON-able (a list; empty for a healthy run).
    assert isinstance(rows["elu"]["diagnosis"], list)
    assert all({"kind", "layer", "first_step", "last_step", "evidence", "message"} == set(f)
               for f in rows["elu"]["diagnosis"])
    assert "## Diagnosis" in md
    model = keras.models.load_model(root / "a" / "best_model.keras")
    assert model.name == f"small_{result.best}"


def test_two_runs_give_equal_reports_apart_from_timings(api_runs):
    root, (a, b) = api_runs
    ja = json.loads((root / "a" / "report.json").read_text().replace(str(root / "a"), "OUT"))
    jb = json.loads((root / "b" / "report.json").read_text().replace(str(root / "b"), "OUT"))
    assert _without_timings(ja) == _without_timings(jb)
    assert ja["runs"][0]["history"]["loss"] == jb["runs"][0]["history"]["loss"]


def test_hparams_dashboard(api_runs):
    root, (result, _) = api_runs
    from tensorboard.plugins.hparams import plugin_data_pb2

    def hparams_of(path):
        found = {}
        for events in path.glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(events)):
                for value in event.summary.value:
                    if value.metadata.plugin_data.plugin_name == "hparams":
                        data = plugin_data_pb2.HParamsPluginData.FromString(
                            value.metadata.plugin_data.content)
                        found[value.tag] = data
                    elif value.tag.startswith("hparams/"):
                        found[value.tag] = float(tf.make_ndarray(value.tensor))
        return found

    run = hparams_of(root / "a" / "tensorboard" / "elu")
    start = run["_hparams_/session_start_info"].session_start_info.hparams
    assert start["activation"].string_value == "elu"
    assert start["optimizer"].string_value == "adam"
    assert start["init"].string_value == "he_normal"
    assert start["learning_rate"].number_value == pytest.approx(0.01)
    row = next(r for r in result.runs if r["activation"] == "elu")
    assert run["hparams/val_loss"] == pytest.approx(row["val_loss"], rel=1e-6)
    config = hparams_of(root / "a" / "tensorboard")["_hparams_/experiment"].experiment
    assert {h.name for h in config.hparam_infos} >= {"activation", "init", "optimizer",
                                                     "learning_rate"}
    assert "hparams/val_top3" in {m.name.tag for m in config.metric_infos}


BUILDER = '''
import keras
import numpy as np
import keras_activations as ka


def build(activation):
    """A regression MLP; 'tanh' gets a layer that makes the loss NaN."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, name="h1")])
    model.add(ka.compare.activation_layer(activation, name="act1"))
    if activation == "tanh":
        model.add(keras.layers.Lambda(lambda t: t * np.float32("nan"), name="nan"))
    model.add(keras.layers.Dense(1, name="out"))
    return model


def broken():
    raise RuntimeError("no model today")
'''


def _write_builder(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(BUILDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 3)).astype("float32")
    np.savez(tmp_path / "reg.npz", x=x, y=x @ np.array([1.0, -2.0, 0.5], "float32"))


def test_builder_regression_npz_and_a_failing_activation(tmp_path, monkeypatch, capsys):
    _write_builder(tmp_path, monkeypatch)
    out = tmp_path / "out"
    rc = cli.main(["compare", "--model", "my_models:build", "--data", str(tmp_path / "reg.npz"),
                   "--activations", "elu,tanh,celu:alpha=0.5", "--epochs", "1",
                   "--optimizer", "adam", "--out", str(out), "--quiet", "--no-export"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "tanh failed: the loss became NaN or inf in epoch 1" in captured.out
    report = json.loads((out / "report.json").read_text())
    rows = {r["activation"]: r for r in report["runs"]}
    assert [r["status"] for r in report["runs"]] == ["ok", "failed", "ok"]
    assert report["data"]["task"] == "regression"
    assert set(rows["elu"]["metrics"]) == {"loss", "mean_absolute_error"}
    assert rows["celu(alpha=0.5)"]["val_mean_absolute_error"] > 0
    assert report["best"] in ("elu", "celu(alpha=0.5)")
    md = (out / "report.md").read_text()
    assert "| train mean_absolute_error |" in md and "## Failed runs" in md
    assert "| failed |" in md


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda p: ["--model", "my_models:nope"], "has no 'nope'"),
        (lambda p: ["--model", "not_a_module_q:build"], "cannot import 'not_a_module_q'"),
        (lambda p: ["--data", str(p / "missing.npz")], "does not exist"),
        (lambda p: ["--data", str(p / "bad.npz")], "is not a readable .npz file"),
        (lambda p: ["--model", str(p / "plain.keras"), "--activations", "relu,maxout"],
         "maxout as a candidate needs a builder"),
        (lambda p: ["--model", str(p / "linear.keras")], "has no activation to swap"),
        (lambda p: ["--model", str(p / "bad.npz")], "cannot be loaded as a Keras model"),
        (lambda p: ["--data", str(p / "t.csv")], "name its target column with --target"),
    ],
)
def test_user_errors_are_one_line(tmp_path, monkeypatch, capsys, make_args, message):
    _write_builder(tmp_path, monkeypatch)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="relu"),
                      keras.layers.Dense(1)]).save(tmp_path / "plain.keras")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(tmp_path / "linear.keras")
    rc = cli.main(["compare", "--activations", "relu", "--out", str(tmp_path / "o"),
                   "--data", str(tmp_path / "reg.npz")] + make_args(tmp_path))
    assert rc == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "o" / "report.json").exists()


def test_keras_file_and_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = ["f1,f2,f3,label"] + [f"{a:.3f},{b:.3f},{c:.3f},{'yes' if a + b > 0 else 'no'}"
                                 for a, b, c in rng.normal(size=(80, 3))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")], name="given")
    model.save(tmp_path / "given.keras")
    out = tmp_path / "out"
    rc = cli.main(["compare", "--model", str(tmp_path / "given.keras"), "--data",
                   str(tmp_path / "t.csv"), "--target", "label", "--activations", "selu",
                   "--epochs", "1", "--out", str(out), "--quiet", "--no-export",
                   "--keep-init"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["num_classes"] == 2 and report["model"]["kind"] == "model"
    assert report["runs"][0]["init"] == "kept"
    assert [s["layer"] for s in report["runs"][0]["swaps"]] == [model.layers[0].name]


def test_image_directory_and_tf_data(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                tmp_path / "img" / label / f"{i}.png")
    result = keras_activations.compare(
        "cnn", str(tmp_path / "img"), activations=["elu"], epochs=1, depth=2, width=4,
        image_size=(8, 8), verbose=0, monitor=False, stream=io.StringIO())
    assert result["data"]["input_shape"] == [8, 8, 3] and result.paths == {}
    x, y = _digits(64)
    ds = tf.data.Dataset.from_tensor_slices((x.reshape(64, -1), y)).batch(16)
    result = keras_activations.compare(
        keras.Sequential([keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")]),
        ds, activations=["tanh"], epochs=1, verbose=0, monitor=False, stream=io.StringIO())
    assert result["data"]["num_train"] == 51 and result.runs[0]["status"] == "ok"


def _default_sigint():
    # A command started in the background by a shell without job control
    # (`make test &` in a script) ignores SIGINT, and so would the child: it
    # gets Ctrl-C's default back, as in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "keras_activations", "compare", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, preexec_fn=_default_sigint)


def test_sigint_writes_a_partial_report_and_resume_finishes(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--activations", "relu,elu", "--depth", "2", "--width", "6",
            "--epochs", "8", "--max-examples", "200", "--out", str(out), "--quiet"]
    proc = _cli(*args)
    deadline = time.time() + 240
    while not (out / "runs" / "relu.json").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = [l for l in stderr.splitlines() if l.startswith("keras-activations")]
    assert len(lines) == 1 and "interrupted: 1 of 2 activations finished" in lines[0], stderr
    assert "Traceback" not in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["partial"] is True and [r["activation"] for r in report["runs"]] == ["relu"]
    assert (out / "report.md").read_text().count("**Partial**") == 1
    assert (out / "loss_curves.png").read_bytes().startswith(PNG_MAGIC)
    first = report["runs"][0]

    # Other settings are refused; the same ones continue, keeping relu.
    rc = cli.main(["compare", *[a if a != "8" else "7" for a in args], "--resume"])
    assert rc == 2
    line = _error_line(capsys)
    assert "--resume" in line and "config.epochs: 8 there, 7 now" in line
    resumed = _cli(*args, "--resume")
    stdout, stderr = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, stderr
    assert "relu: finished before, kept (--resume)" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["partial"] is False
    assert [r["activation"] for r in report["runs"]] == ["relu", "elu"]
    assert report["runs"][0] == first
    assert (out / "best_model.keras").is_file()


def test_fit_arguments_that_compare_owns_are_refused(tmp_path):
    x, y = _digits(32)
    with pytest.raises(keras_activations.compare.CompareError, match="fit argument 'shuffle'"):
        keras_activations.compare("mlp", (x, y), activations=["relu"], shuffle=True)
    with pytest.raises(keras_activations.compare.CompareError, match="epochs must be a positive"):
        keras_activations.compare("mlp", (x, y), activations=["relu"], epochs=0)
