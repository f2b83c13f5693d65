"""A stand-in for `GradientMonitor` that fills `history` per docs/CONTRACTS.md.

It measures the real thing with plain Keras: at each epoch end, for every
layer named `act_*`, the gradient norm of the `Dense`/`Conv2D` kernel
feeding it on one training batch, the mean/std of the activation and the
fraction of units whose output is <= 0 on the whole batch (only for `relu`,
the one activation here that can die).
"""

import keras
import numpy as np
import tensorflow as tf


class FakeMonitor(keras.callbacks.Callback):
    def __init__(self, log_dir=None, batch=None):
        super().__init__()
        self.log_dir = log_dir
        self.batch = batch
        self.history = []
        self._previous = {}
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1

    def set_batch(self, x, y):
        self.batch = (x, y)

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        if self.batch is None:  # Any data: random images and labels.
            rng = np.random.default_rng(0)
            shape = (64,) + tuple(model.inputs[0].shape[1:])
            classes = model.outputs[0].shape[-1]
            self.batch = (
                rng.uniform(size=shape).astype("float32"),
                rng.integers(0, classes, size=64),
            )
        x, y = self.batch
        acts = [l for l in model.layers if l.name.startswith("act_")]
        names = {l.name for l in model.layers}
        kernels = {}
        for a in acts:
            feeder = a.name.replace("act_", "dense_")
            if feeder not in names:
                feeder = a.name.replace("act_", "conv_")
            kernels[a.name] = model.get_layer(feeder).kernel
        probe = keras.Model(model.input, [a.output for a in acts])
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y, model(x))
            loss = tf.reduce_mean(loss)
        grads = tape.gradient(loss, list(kernels.values()))
        outputs = probe(x)
        layers = {}
        for depth, (act, grad, out) in enumerate(zip(acts, grads, outputs)):
            g = grad.numpy().ravel()
            prev = self._previous.get(act.name)
            cosine = None
            if prev is not None:
                cosine = float(g @ prev / (np.linalg.norm(g) * np.linalg.norm(prev) + 1e-12))
            self._previous[act.name] = g
            o = out.numpy()
            dead = None
            if getattr(act, "activation", None) is keras.activations.relu:
                flat = o.reshape((-1, o.shape[-1]))
                dead_units = int(np.sum(np.all(flat <= 0, axis=0)))
                dead = dead_units / o.shape[-1]
            layers[act.name] = {
                "depth": depth,
                "gradient_norm": float(np.linalg.norm(g)),
                "gradient_cosine": cosine,
                "units": int(o.shape[-1]),
                "dead_units": None if dead is None else dead_units,
                "dead_fraction": dead,
                "saturation": None,
                "activation_mean": float(o.mean()),
                "activation_std": float(o.std()),
                "activation_histogram": None,
            }
        self.history.append(
            {"step": self._step, "epoch": epoch, "steps": self._step,
             "global_norm": 0.0, "variables": {}, "layers": layers}
        )


def factory_for(data):
    """A monitor factory (log_dir -> callback) probing the first 256 training examples."""
    x, y = data.train_arrays()

    def factory(log_dir):
        monitor = FakeMonitor(log_dir)
        monitor.set_batch(x[:256], y[:256])
        return monitor

    return factory
