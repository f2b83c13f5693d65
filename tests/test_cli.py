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
    _, out, _ = comparison
    runs = sorted(p.name for p in (out / "tensorboard").iterdir() if p.is_dir())
    assert runs == sorted(ACTIVATIONS)
    for name in ACTIVATIONS:
        events = list((out / "tensorboard" / name).rglob("events.out.tfevents.*"))
        assert events, name


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
