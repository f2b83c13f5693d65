"""Save, export, reload and serve a model built from PReLU, PELU and Maxout, and check its gradients.

What it shows: the package's layers survive the whole deployment path with
no `custom_objects`: a digits classifier with learned-slope (PReLU),
learned-shape (PELU) and maxout layers is trained briefly, saved as
`.keras`, reloaded with `keras.models.load_model`, exported as a TensorFlow
SavedModel (`model.export`), reloaded with `tf.saved_model.load` and served
over HTTP in the TensorFlow Serving REST format (`{"instances": ...}` ->
`{"predictions": ...}`) from a local server. Then the hand-written gradients
are checked: input gradients of the reloaded `.keras` model and of the
SavedModel's `serve` must equal the original's, and agree with central
finite differences.

Expected result: every prediction path agrees with the original model to
~1e-6; the reloaded model's learned PReLU slopes and PELU parameters equal
the trained ones; the served predictions' argmax equals the labels about
as often as the validation accuracy (0.98 after 8 epochs here); gradients are
identical after reload, equal to ~1e-6 through the SavedModel, and within
~1e-2 (relative) of finite differences.

Run: `python examples/export_and_serve.py` (about 20 s), or `--smoke`.
Writes `model.keras`, `savedmodel/1/` and `results.json` under `--out`.
"""

import argparse
import http.server
import json
import os
import threading
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_activations  # noqa: E402
from keras_activations.compare import data as data_lib  # noqa: E402


def build(num_classes=10, seed=0):
    """Flatten -> Dense/PReLU -> Dense/PELU -> Dense/Maxout(32, k=2) -> softmax."""
    init = keras.initializers.HeNormal(seed=seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, kernel_initializer=init),
            keras_activations.PReLU(name="prelu"),
            keras.layers.Dense(64, kernel_initializer=init),
            keras_activations.PELU(name="pelu"),
            keras.layers.Dense(64, kernel_initializer=keras.initializers.LecunNormal(seed=seed)),
            keras_activations.Maxout(num_units=32, name="maxout"),
            keras.layers.Dense(num_classes, activation="softmax"),
        ],
        name="prelu_pelu_maxout",
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    """A minimal TensorFlow-Serving-style REST endpoint: POST /v1/models/digits:predict."""

    serve_fn = None

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        images = tf.constant(np.asarray(body["instances"], dtype="float32"))
        predictions = self.serve_fn(images).numpy().tolist()
        payload = json.dumps({"predictions": predictions}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def serve_and_request(serve_fn, images):
    """Serves `serve_fn` on a free local port and POSTs `images`; returns the predictions."""
    handler = type("Handler", (_Handler,), {"serve_fn": staticmethod(serve_fn)})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1/models/digits:predict"
        request = urllib.request.Request(
            url,
            data=json.dumps({"instances": images.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return np.asarray(json.loads(response.read())["predictions"])
    finally:
        server.shutdown()
        server.server_close()


def input_gradient(model, x, y):
    """d(loss)/d(input) of `model` at `x`."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, model(x)))
    return tape.gradient(loss, x).numpy()


def finite_difference_error(model, x, y, coordinates=20, eps=1e-2, seed=0):
    """Max relative error of the input gradient against central differences.

    Compared on `coordinates` random pixels of a single image, in float64
    arithmetic on float32 model outputs (hence eps 1e-2).
    """
    rng = np.random.default_rng(seed)
    x = x[:1].astype("float64")
    analytic = input_gradient(model, x.astype("float32"), y[:1]).reshape(-1)

    def loss(v):
        p = model(v.astype("float32")).numpy().astype("float64")
        return -np.log(p[0, int(y[0])])

    errors = []
    for i in rng.choice(x.size, size=coordinates, replace=False):
        step = np.zeros(x.size)
        step[i] = eps
        step = step.reshape(x.shape)
        numeric = (loss(x + step) - loss(x - step)) / (2 * eps)
        scale = max(abs(numeric), abs(analytic[i]), 1e-3)
        errors.append(abs(numeric - analytic[i]) / scale)
    return float(np.max(errors))


def main(argv=None):
    """Runs the whole path; returns the results dict also written to results.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=os.path.join("runs", "examples",
                                                      "export_and_serve"))
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run for tests: 1 epoch on 300 examples")
    args = parser.parse_args(argv)
    epochs = 1 if args.smoke else args.epochs
    os.makedirs(args.out, exist_ok=True)

    keras.utils.set_random_seed(0)
    data = data_lib.load_data("digits", max_examples=300 if args.smoke else None)
    model = build(data.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(data.train_dataset(), validation_data=data.validation_dataset(),
                        epochs=epochs, verbose=0, shuffle=False)
    val_accuracy = float(history.history["val_accuracy"][-1])
    x_val, y_val = data.validation_arrays()
    reference = model.predict(x_val, verbose=0)

    keras_path = os.path.join(args.out, "model.keras")
    model.save(keras_path)
    reloaded = keras.models.load_model(keras_path)  # no custom_objects
    savedmodel_path = os.path.join(args.out, "savedmodel", "1")
    model.export(savedmodel_path, verbose=False)
    exported = tf.saved_model.load(savedmodel_path)

    keras_diff = float(np.max(np.abs(reloaded.predict(x_val, verbose=0) - reference)))
    savedmodel_diff = float(np.max(np.abs(exported.serve(tf.constant(x_val)).numpy() - reference)))
    served = serve_and_request(exported.serve, x_val[:32])
    served_diff = float(np.max(np.abs(served - reference[:32])))
    served_accuracy = float(np.mean(served.argmax(-1) == y_val[:32]))

    parameters_equal = all(
        np.array_equal(a, b)
        for name in ("prelu", "pelu")
        for a, b in zip(model.get_layer(name).get_weights(),
                        reloaded.get_layer(name).get_weights())
    )
    gradient_diff = float(np.max(np.abs(
        input_gradient(model, x_val[:16], y_val[:16])
        - input_gradient(reloaded, x_val[:16], y_val[:16])
    )))
    fd_error = finite_difference_error(reloaded, x_val, y_val)
    served_gradient_diff = float(np.max(np.abs(
        input_gradient(model, x_val[:16], y_val[:16])
        - input_gradient(exported.serve, x_val[:16], y_val[:16])
    )))

    results = {
        "epochs": epochs,
        "val_accuracy": val_accuracy,
        "keras_reload_max_diff": keras_diff,
        "savedmodel_max_diff": savedmodel_diff,
        "served_max_diff": served_diff,
        "served_accuracy_first_32": served_accuracy,
        "learned_parameters_equal_after_reload": parameters_equal,
        "prelu_alpha_mean": float(np.mean(reloaded.get_layer("prelu").get_weights()[0])),
        "gradient_max_diff_after_reload": gradient_diff,
        "finite_difference_max_relative_error": fd_error,
        "savedmodel_gradient_max_diff": served_gradient_diff,
        "keras_path": keras_path,
        "savedmodel_path": savedmodel_path,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)

    print(f"trained {epochs} epoch(s): validation accuracy {val_accuracy:.3f}")
    print(f".keras reload      max |diff| {keras_diff:.1e}  (learned PReLU/PELU "
          f"parameters equal: {parameters_equal}; mean PReLU slope "
          f"{results['prelu_alpha_mean']:.3f})")
    print(f"SavedModel serve   max |diff| {savedmodel_diff:.1e}")
    print(f"HTTP :predict      max |diff| {served_diff:.1e}, accuracy on 32 "
          f"requests {served_accuracy:.3f}")
    print(f"gradients          after reload max |diff| {gradient_diff:.1e}; vs "
          f"finite differences max relative error {fd_error:.1e}; through the "
          f"SavedModel max |diff| {served_gradient_diff:.1e}")
    print(f"Load: keras.models.load_model('{keras_path}'); serve: "
          f"tf.saved_model.load('{savedmodel_path}').serve(images), or TensorFlow "
          f"Serving with --model_base_path={os.path.abspath(os.path.dirname(savedmodel_path))}")
    return results


if __name__ == "__main__":
    main()
