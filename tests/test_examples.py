"""Each example in its --smoke mode, in-process, with assertions on what it reports."""

import importlib.util
import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_example(name, out):
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", os.path.join(EXAMPLES, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__doc__ and "Expected result" in module.__doc__
    results = module.main(["--smoke", "--out", str(out)])
    # What main returns is what it wrote.
    written = json.loads((out / "results.json").read_text())
    assert written.keys() == results.keys()
    return results


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_vanishing_gradients(tmp_path):
    results = run_example("vanishing_gradients", tmp_path)
    norms = results["first_layer_gradient_norm"]
    assert results["depths"] == [2, 10]
    # Deep sigmoid: the first layer's gradient is far below ReLU's...
    assert results["sigmoid_over_relu_at_max_depth"] < 1e-3
    # ...and it fell by orders of magnitude with depth, while ReLU's and SELU's did not.
    assert norms["sigmoid"]["10"] < 1e-3 * norms["sigmoid"]["2"]
    assert norms["relu"]["10"] > 0.2 * norms["relu"]["2"]
    assert norms["selu"]["10"] > 0.2 * norms["selu"]["2"]
    # SELU with LeCun-normal init: every layer near mean 0, variance 1.
    selu = results["hidden_stats_at_max_depth"]["selu"]
    assert len(selu["mean"]) == 10
    assert max(abs(m) for m in selu["mean"]) < 0.15
    assert all(0.7 < v < 1.3 for v in selu["variance"])
    # ReLU: positive means (bias shift).
    assert min(results["hidden_stats_at_max_depth"]["relu"]["mean"]) > 0.1
    assert_png(tmp_path / "vanishing_gradients.png")


def test_maxout_convex(tmp_path):
    results = run_example("maxout_convex", tmp_path)
    abs_ = {r["k"]: r for r in results["abs"]}
    square = {r["k"]: r for r in results["square"]}
    # One line cannot fit |x| (best possible MSE 1/12); two pieces fit it exactly.
    assert 0.07 < abs_[1]["mse"] < 0.1
    assert abs_[2]["mse"] < 1e-6 and abs_[2]["used"] == 2
    # x^2: error falls with k, close to the best k-piece fit.
    assert square[1]["mse"] > square[2]["mse"] > square[4]["mse"]
    for k in (2, 4):
        assert square[k]["mse"] < 1.3 * square[k]["optimal_mse"]
    assert square[4]["used"] == 4
    assert_png(tmp_path / "maxout_convex.png")


def test_dead_units(tmp_path):
    results = run_example("dead_units", tmp_path)
    runs = results["setups"]["negative_bias"]["runs"]
    relu, elu = runs["relu"], runs["elu"]
    assert len(relu["dead_fraction"]) == results["epochs"] == 2
    # ReLU units switched off by the negative bias are dead and stay dead.
    assert min(relu["dead_fraction"]) > 0.3
    assert relu["dead_fraction"][-1] == pytest.approx(relu["inactive_fraction"][-1])
    # ELU units cannot die; ELU learns, ReLU does not.
    assert max(elu["dead_fraction"]) == 0.0
    assert elu["inactive_fraction"][-1] < relu["inactive_fraction"][-1]
    assert elu["val_accuracy"][-1] > relu["val_accuracy"][-1] + 0.2
    assert_png(tmp_path / "dead_units.png")


def test_smoothness(tmp_path):
    results = run_example("smoothness", tmp_path)
    assert list(results["runs"]) == ["relu", "elu"]
    relu, elu = results["runs"]["relu"], results["runs"]["elu"]
    for run in (relu, elu):
        assert len(run["loss"]) == 2 and all(math.isfinite(v) and v > 0 for v in run["loss"])
        assert -1.0 <= run["mean_gradient_cosine"] <= 1.0
    assert elu["loss"][-1] < relu["loss"][-1]
    # Bias shift: ReLU's hidden outputs are more positive than ELU's.
    assert relu["mean_activation"] > elu["mean_activation"] + 0.1
    assert results["agrees_with_elu_paper"] is True
    assert_png(tmp_path / "smoothness.png")


def test_export_and_serve(tmp_path):
    results = run_example("export_and_serve", tmp_path)
    assert (tmp_path / "model.keras").is_file()
    assert (tmp_path / "savedmodel" / "1" / "saved_model.pb").is_file()
    assert results["keras_reload_max_diff"] < 1e-6
    assert results["savedmodel_max_diff"] < 1e-5
    assert results["served_max_diff"] < 1e-5
    assert results["learned_parameters_equal_after_reload"] is True
    assert results["gradient_max_diff_after_reload"] < 1e-6
    assert results["savedmodel_gradient_max_diff"] < 1e-5
    assert results["finite_difference_max_relative_error"] < 5e-2
    assert 0.0 <= results["served_accuracy_first_32"] <= 1.0


def test_compare_your_model(tmp_path):
    results = run_example("compare_your_model", tmp_path)
    resnet, regression = results["resnet"], results["regression"]
    # Every ReLU of the ResNet-style model was swapped (the stem's argument and the four
    # ReLU layers of the blocks); the softmax output was kept.
    assert resnet["swapped_layers"] == ["stem", "block1_relu1", "block1_out",
                                        "block2_relu1", "block2_out"]
    assert resnet["kept"] == ["probs"]
    assert list(resnet["val_accuracy"]) == ["relu", "elu"]
    assert all(0.0 <= v <= 1.0 for v in resnet["val_accuracy"].values())
    assert resnet["best"] == min(resnet["val_loss"], key=resnet["val_loss"].get)
    # The builder made maxout possible; float targets gave a regression with MAE reported.
    assert regression["status"] == {"maxout": "ok"}
    assert all(0.0 < v < 2.0 for v in regression["val_mean_absolute_error"].values())
    for part in ("resnet", "regression"):
        report = json.loads((tmp_path / part / "report.json").read_text())
        assert report["partial"] is False and report["best"] == results[part]["best"]
        assert_png(tmp_path / part / "loss_curves.png")
