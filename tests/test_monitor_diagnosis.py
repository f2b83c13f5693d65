"""GradientMonitor's diagnosis: each condition planted in a tiny model (the
finding, its layer and its step), the rules on hand-made records, and how
findings are reported (warnings, TensorBoard text, table)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings

import numpy as np
import pytest
import keras
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from keras_activations import GradientMonitor
from keras_activations.monitor import diagnosis


def _data(n=32, features=8, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(n, features).astype("float32"), rng.randn(n, 1).astype("float32")


def _mlp(activation, depth=3, width=16, init="glorot_uniform", optimizer=None, features=8, seed=3, **dense):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((features,))]
    layers += [
        keras.layers.Dense(width, activation=activation, kernel_initializer=init, name=f"h{i}", **dense)
        for i in range(depth)
    ]
    model = keras.Sequential(layers + [keras.layers.Dense(1, name="out")])
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss="mse")
    return model


def _model(*layers, optimizer=None):
    """`Input((8,))`, `layers`, then a linear `Dense(1)` named `out`."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), *layers, keras.layers.Dense(1, name="out")])
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss="mse")
    return model


def _dead_relu(name):
    return keras.layers.Dense(16, activation="relu", bias_initializer=keras.initializers.Constant(-10.0), name=name)


def _diagnose(model, x, y, epochs=1, batch_size=8, **kwargs):
    monitor = GradientMonitor(update_freq=1, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, callbacks=[monitor])
    said = [str(w.message) for w in caught if "GradientMonitor: " in str(w.message)]
    return monitor, monitor.diagnose(), said


def _kinds(findings):
    return {(f.kind, f.layer) for f in findings}


@pytest.mark.parametrize(
    "activation, init, optimizer",
    [("elu", "he_normal", lambda: keras.optimizers.Adam(1e-3)),
     ("selu", "lecun_normal", lambda: keras.optimizers.SGD(0.01))],
)
def test_a_healthy_mlp_has_no_finding(activation, init, optimizer):
    x, y = _data()
    monitor, findings, said = _diagnose(_mlp(activation, init=init, optimizer=optimizer()), x, y, epochs=2)
    assert len(monitor.history) == 8
    assert findings == [] and said == []
    assert "Diagnosis" not in monitor.table()


def test_dying_units_of_a_relu_layer_with_bias_minus_10():
    x, y = _data()
    model = _model(keras.layers.Dense(16, activation="elu", name="ok"), _dead_relu("dying"))
    monitor, findings, said = _diagnose(model, x, y)
    dying = [f for f in findings if f.kind == "dying_units"]
    assert [(f.layer, f.first_step, f.last_step) for f in dying] == [("dying", 1, None)]
    assert dying[0].evidence["dead_fraction"] == 1.0 and dying[0].evidence["threshold"] == 0.1
    assert "leaky" in dying[0].message and "He" in dying[0].message and "bias" in dying[0].message
    # Reported once, when it began (at the second record: `records=2`).
    assert sum("dying_units of layer 'dying'" in s for s in said) == 1
    # The dead layer passes no gradient: it does not learn either.
    assert ("update_ratio_low", "dying") in _kinds(findings)


def test_vanishing_gradients_of_a_10_layer_sigmoid_mlp():
    x, y = _data(n=64, features=16)
    model = _mlp("sigmoid", depth=10, features=16, optimizer=keras.optimizers.SGD(0.01))
    _, findings, _ = _diagnose(model, x, y, batch_size=32)
    vanishing = [f for f in findings if f.kind == "vanishing_gradients"]
    assert [(f.layer, f.first_step, f.last_step) for f in vanishing] == [("h0", 1, None)]
    evidence = vanishing[0].evidence
    assert evidence["last_layer"] == "out" and evidence["ratio"] < 1e-3
    assert evidence["ratio"] == pytest.approx(evidence["first_norm"] / evidence["last_norm"])
    assert "SELU" in vanishing[0].message and "lecun_normal" in vanishing[0].message


def test_saturated_sigmoid_units():
    x, y = _data()
    model = _mlp("sigmoid", depth=1, init=keras.initializers.RandomNormal(stddev=10.0))
    monitor, findings, _ = _diagnose(model, x, y)
    saturated = [f for f in findings if f.kind == "saturation"]
    assert [(f.layer, f.first_step) for f in saturated] == [("h0", 1)]
    share = saturated[0].evidence["saturation"]
    assert share == monitor.history[1]["layers"]["h0"]["saturation"] >= 0.25


def test_learning_rate_10_explodes_then_turns_nan():
    x, y = _data()
    model = _mlp("relu", init="he_normal", optimizer=keras.optimizers.SGD(10.0))
    monitor, findings, said = _diagnose(model, x, y)
    kinds = _kinds(findings)
    assert ("exploding_gradients", None) in kinds
    exploding = [f for f in findings if f.kind == "exploding_gradients"][0]
    norms = [r["global_norm"] for r in monitor.history]
    assert exploding.first_step == 1 + next(i for i, n in enumerate(norms) if not n <= 1e3)
    high = {f.layer for f in findings if f.kind == "update_ratio_high"}
    assert {"h0", "h1", "h2"} <= high
    assert all(f.first_step == 1 for f in findings if f.kind == "update_ratio_high")
    assert any("learning rate is probably too high" in s for s in said)


def test_update_ratio_far_below_the_usual_is_a_learning_rate_too_low():
    x, y = _data()
    model = _mlp("elu", init="he_normal", optimizer=keras.optimizers.SGD(1e-7))
    _, findings, _ = _diagnose(model, x, y)
    low = [f for f in findings if f.kind == "update_ratio_low"]
    assert {f.layer for f in low} == {"h0", "h1", "h2", "out"}
    assert all(f.first_step == 1 and f.evidence["update_ratio"] < 1e-5 for f in low)


class _NaNAt(keras.layers.Layer):
    """Identity, but one example of the `step`-th batch (1-based) turns NaN."""

    def __init__(self, step, **kwargs):
        super().__init__(**kwargs)
        self.step = step
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x, training=None):
        self.calls.assign_add(1.0)
        poison = tf.where(tf.equal(self.calls, float(self.step)), np.nan, 0.0)
        mask = tf.one_hot(0, tf.shape(x)[0])[:, None]  # the first example
        return x + poison * mask


def test_nan_injected_into_a_layers_input_names_that_layer_and_step():
    x, y = _data()
    model = _model(
        keras.layers.Dense(16, activation="elu", name="h0"),
        _NaNAt(3, name="poison"),
        keras.layers.Dense(16, activation="tanh", name="h1"),
        keras.layers.Dense(16, activation="elu", name="h2"),
        optimizer=keras.optimizers.SGD(0.01),
    )
    monitor, findings, said = _diagnose(model, x, y)
    assert [r["global_norm"] is not None and np.isfinite(r["global_norm"]) for r in monitor.history] == [
        True, True, False, False]
    nonfinite = [f for f in findings if f.kind == "nonfinite_gradients"]
    assert [(f.layer, f.first_step, f.last_step) for f in nonfinite] == [("h1", 3, None)]
    # Every layer's gradient is NaN from step 3 on; h1's outputs are the first not finite.
    assert nonfinite[0].evidence["nonfinite_outputs"][0] == "h1"
    assert set(nonfinite[0].evidence["nonfinite_gradients"]) == {"h0", "h1", "h2", "out"}
    assert any("forward pass" in s and "'h1'" in s for s in said)
    # Nothing else is read from the NaN records.
    assert all(f.first_step < 3 for f in findings if f.kind != "nonfinite_gradients")


def test_findings_are_warned_written_and_tabled_when_they_begin_and_end(tmp_path):
    # A finding begins after `records` records and ends after as many
    # without it; a record without it in between is no end (no flicker).
    fractions = [0.5, 0.5, 0.0, 0.5, 0.0, 0.0]
    records = [_record(i + 1, {"h": {"dead_fraction": f}}) for i, f in enumerate(fractions)]
    tracker = diagnosis.Diagnosis(diagnosis.resolve_thresholds())
    events = [[(f.kind, f.layer, e) for f, e in tracker.update(r)] for r in records]
    assert events == [[], [("dying_units", "h", "began")], [], [], [], [("dying_units", "h", "ended")]]
    (finding,) = tracker.findings
    assert (finding.first_step, finding.last_step) == (1, 4)
    # A figure hovering at the threshold (10%) is one finding: it ends only
    # below half the threshold.
    fractions = [0.12, 0.11, 0.08, 0.12, 0.06, 0.09, 0.07]
    hover = [_record(i + 1, {"h": {"dead_fraction": f}}) for i, f in enumerate(fractions)]
    assert _run(hover) == [("dying_units", "h", 1, None)]
    assert _run(hover + [_record(8, {"h": {"dead_fraction": 0.04}}), _record(9, {"h": {"dead_fraction": 0.0}})]) == [
        ("dying_units", "h", 1, 7)
    ]
    assert "ended" in finding.describe("ended") and "steps 1-4" in finding.describe()
    # Through the monitor: a warning and a TensorBoard text at each event.
    x, y = _data()
    model = _model(_dead_relu("h"), optimizer=keras.optimizers.SGD(0.0))
    monitor, findings, said = _diagnose(model, x, y, log_dir=str(tmp_path),
                                        diagnosis_thresholds={"update_ratio_low": None})
    assert [(f.kind, f.layer, f.first_step) for f in findings] == [("dying_units", "h", 1)]
    assert said == [findings[0].describe("began")]
    acc = event_accumulator.EventAccumulator(monitor.events_dir, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    texts = acc.Tensors("diagnosis")
    assert [e.step for e in texts] == [2]
    text = tf.make_ndarray(texts[0].tensor_proto).item().decode()
    assert text.startswith("- **began**: dying_units of layer 'h'")
    assert acc.SummaryMetadata("diagnosis").plugin_data.plugin_name == "text"
    assert "Diagnosis:" in monitor.table() and "dying_units of layer 'h'" in monitor.table()


def _record(step, layers, global_norm=1.0, variables=None, steps=1):
    full = {}
    for depth, (name, figures) in enumerate(layers.items()):
        entry = dict.fromkeys(
            ("gradient_norm", "update_ratio", "dead_fraction", "dead_units", "units", "saturation", "activation_mean"))
        entry.update(figures, depth=depth)
        full[name] = entry
    return {"step": step, "steps": steps, "gradient_step": step, "global_norm": global_norm,
            "variables": variables or {}, "layers": full}


def _run(history, **overrides):
    tracker = diagnosis.Diagnosis(diagnosis.resolve_thresholds(overrides or None))
    for r in history:
        tracker.update(r)
    return [(f.kind, f.layer, f.first_step, f.last_step) for f in tracker.findings]


def test_rules_on_records():
    # A condition must hold `records` consecutive records; a gap restarts it.
    dead = [_record(s, {"h": {"dead_fraction": f}}) for s, f in enumerate([0.2, 0.0, 0.2, 0.2, 0.2], 1)]
    assert _run(dead) == [("dying_units", "h", 3, None)]
    assert _run(dead, records=1) == [("dying_units", "h", 1, 1), ("dying_units", "h", 3, None)]
    assert _run(dead, dead_fraction=None) == []
    # A record without the figure leaves the condition as it was.
    gap = [_record(1, {"h": {"saturation": 0.5}}), _record(2, {"h": {}}), _record(3, {"h": {"saturation": 0.5}})]
    assert _run(gap) == [("saturation", "h", 1, None)]
    # Exploding: above the norm, or grown by the factor since the first record.
    norms = [_record(s, {}, global_norm=n) for s, n in enumerate([0.01, 0.1, 15.0, 20.0, 0.5], 1)]
    assert _run(norms) == [("exploding_gradients", None, 3, 4)]
    assert _run(norms, exploding_growth=None) == []
    assert _run(norms[:2] + [_record(3, {}, global_norm=2e3)], exploding_growth=None) == [
        ("exploding_gradients", None, 3, None)]
    # Vanishing: the first layer with a gradient norm against the last.
    grads = {"a": {"gradient_norm": 1e-5}, "act": {}, "b": {"gradient_norm": 0.1}}
    assert _run([_record(1, grads), _record(2, grads)]) == [("vanishing_gradients", "a", 1, None)]
    # A gradient of exactly 0 is a dead layer's (dying units), not a vanishing one.
    dead_first = {"a": {"gradient_norm": 0.0}, "b": {"gradient_norm": 0.1}}
    assert _run([_record(1, dead_first), _record(2, dead_first)]) == []
    # Update ratios: NaN is too high; 0 too low.
    ratios = [_record(s, {"a": {"update_ratio": float("nan")}, "b": {"update_ratio": 0.0}}) for s in (1, 2)]
    assert _run(ratios) == [("update_ratio_high", "a", 1, None), ("update_ratio_low", "b", 1, None)]
    # Non-finite gradients of the backward pass: the last layer whose gradient is not finite.
    nan = float("nan")
    bad = _record(2, {"a": {"gradient_norm": nan}, "b": {"gradient_norm": nan}, "c": {"gradient_norm": 1.0}},
                  global_norm=nan, variables={"a/kernel": {"nonfinite": 4}})
    good = _record(3, {"a": {"gradient_norm": 1.0}}, variables={"a/kernel": {"nonfinite": 0}})
    assert _run([bad, good]) == [("nonfinite_gradients", "b", 2, 2)]
    (finding,) = diagnosis.diagnose([bad, good], diagnosis.resolve_thresholds(None))
    assert "steps 2-2, first at layer 'b' in the backward pass: its gradients are not finite (" in finding.message
    # No layer's figure is non-finite (only a count): the message names none.
    counted = _record(2, {"a": {"gradient_norm": 1.0}}, variables={"a/kernel": {"nonfinite": 4}})
    (finding,) = diagnosis.diagnose([counted], diagnosis.resolve_thresholds(None))
    assert finding.layer is None and "steps 2-2. What usually helps" in finding.message


@pytest.mark.parametrize(
    "value, match",
    [
        ({"record": 2}, "unknown threshold 'record'"),
        ({"records": 0}, r"\['records'\] must be an integer >= 1"),
        ({"records": None}, r"\['records'\] must be an integer >= 1"),
        ({"saturation": 1.5}, r"\['saturation'\] must be a number in \(0, 1\]"),
        ({"vanishing_ratio": float("nan")}, "vanishing_ratio"),
        ({"update_ratio_low": 0.5}, "update_ratio_low < update_ratio_high"),
        ({"exploding_growth": True}, "exploding_growth"),
    ],
)
def test_thresholds_are_validated(value, match):
    with pytest.raises(ValueError, match=match):
        GradientMonitor(diagnosis_thresholds=value)


def test_thresholds_must_be_a_dict():
    with pytest.raises(TypeError, match="diagnosis_thresholds"):
        GradientMonitor(diagnosis_thresholds=[("records", 2)])
