"""Exported models hold standard TensorFlow ops only: they run where keras_activations is not installed.

One subprocess, in which `import keras_activations` fails (as on a machine without the package), loads
a SavedModel and a TFLite model of every activation and layer, runs them, and tries
`keras.saving.load_model` on a `.keras` file, whose error README quotes.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_activations as ka
from tests.test_tflite import GRID, RTOL, every_activation_model

README = os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")

CLEAN_PROCESS = textwrap.dedent('''
    import json, sys

    class NotInstalled:
        """keras_activations cannot be imported, as where it is not installed."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "keras_activations":
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NotInstalled())
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    saved, tflite, keras_file, out = sys.argv[1:]
    x = tf.constant(np.load(out + ".x.npy"))

    restored = tf.saved_model.load(saved)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = restored.serve(x)
        total = tf.add_n([tf.reduce_sum(y) for y in outputs.values()])
    arrays = {"saved_" + k: v.numpy() for k, v in outputs.items()}
    arrays["saved_gradient"] = tape.gradient(total, x).numpy()

    # Every op type in the graph and its functions is one of TensorFlow's own (tf.raw_ops lists those;
    # an op library loaded at run time adds none), or a call of one of the graph's functions.
    proto = saved_model_pb2.SavedModel()
    with open(saved + "/saved_model.pb", "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    functions = {f.signature.name for f in graph.library.function}
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    unknown = sorted(op for op in ops - functions if not hasattr(tf.raw_ops, op))

    interpreter = tf.lite.Interpreter(model_path=tflite)
    runner = interpreter.get_signature_runner()
    (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
    arrays.update({"tflite_" + k: v for k, v in runner(**{name: x.numpy()}).items()})
    np.savez(out + ".npz", **arrays)

    import keras
    try:
        keras.saving.load_model(keras_file)
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    imported = sorted(m for m in sys.modules if m.split(".")[0] == "keras_activations")
    with open(out + ".json", "w") as f:
        json.dump({"unknown_ops": unknown, "op_count": len(ops), "imported": imported, "error": error}, f)
''')


@pytest.fixture(scope="module")
def clean_process(tmp_path_factory):
    """Exports the models here, runs them in the clean subprocess; returns what both sides computed."""
    tmp = tmp_path_factory.mktemp("portable")
    model, _ = every_activation_model()
    x = np.concatenate([GRID[None], np.random.RandomState(0).randn(2, GRID.size).astype("float32") * 3])
    model.export(str(tmp / "saved"), verbose=False)
    (tmp / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), ka.ELU(alpha=0.5)]).save(str(tmp / "m.keras"))
    np.save(str(tmp / "out.x.npy"), x)

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        outputs = model(xt, training=False)
        total = tf.add_n([tf.reduce_sum(y) for y in outputs.values()])
    here = {k: v.numpy() for k, v in outputs.items()}
    here["gradient"] = tape.gradient(total, xt).numpy()

    args = [str(tmp / p) for p in ("saved", "model.tflite", "m.keras", "out")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", CLEAN_PROCESS, *args], capture_output=True, text=True,
                          env=env, cwd=str(tmp), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    there = dict(np.load(str(tmp / "out.npz")))
    with open(tmp / "out.json") as f:
        report = json.load(f)
    return here, there, report


def test_saved_model_loads_and_runs_without_the_package(clean_process):
    here, there, report = clean_process
    assert report["imported"] == []
    assert report["unknown_ops"] == [] and report["op_count"] > 10
    for key in here:
        if key != "gradient":
            np.testing.assert_array_equal(there["saved_" + key], here[key], err_msg=key)
    # The custom gradients travel with the SavedModel (as functions of standard ops).
    np.testing.assert_allclose(there["saved_gradient"], here["gradient"], rtol=1e-6, atol=1e-6)


def test_tflite_model_runs_without_the_package(clean_process):
    here, there, _ = clean_process
    for key in here:
        if key != "gradient":
            # A few ulp apart (TFLite's tanh is not XLA's); the closed forms' tolerance, test_tflite.RTOL.
            np.testing.assert_allclose(there["tflite_" + key], here[key], rtol=RTOL, atol=1e-12, err_msg=key)


def test_keras_file_without_the_import_fails_with_the_error_readme_quotes(clean_process):
    _, _, report = clean_process
    error = report["error"]
    assert error is not None and error.startswith("TypeError: <class 'keras.src.models.sequential.Sequential'>")
    with open(README) as f:
        readme = f.read()
    # README quotes the message's first line and its cause, word for word (only the configs shortened).
    first_line = error.split("\n")[0]
    cause = "Exception encountered: " + error.split("Exception encountered: ")[1].split(" Full object")[0]
    assert "Could not locate class 'ELU'" in cause
    for quoted in (first_line, cause):
        assert quoted in readme, quoted
    assert "import keras_activations" in readme
