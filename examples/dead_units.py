"""Dead ReLU units, and how leaky, parametric and exponential units avoid them.

What it shows (seed 000, "RELU and Dead Neuron"; seed 002 on generalized
rectifiers): a ReLU unit whose pre-activation is negative for every input
has zero gradient, so nothing can bring it back: it is dead. Leaky ReLU,
PReLU and ELU have a non-zero derivative for negative inputs, so a unit that
is switched off can still learn its way back.

How: an MLP on scikit-learn's digits, He-normal weights, same seed and data
order for every activation, in two set-ups that kill ReLU units:
- `negative_bias`: every hidden bias starts at -0.5 (4 layers, SGD 0.01):
  most units start switched off;
- `high_learning_rate`: SGD with learning rate 0.08 and momentum 0.9 (6
  layers): large updates push units into the dead zone during training.
Per epoch, `keras_activations.GradientMonitor` gives the dead fraction
(units whose derivative was 0 for every example of the epoch) and, from a
pass over the whole training set at each epoch's end, the *inactive*
fraction: units whose pre-activation is <= 0 for every training example
(for ReLU that is dead; for the others it is a unit that is off but still
receives gradient).

Expected result (measured here): negative_bias: ReLU 56% dead from the
first epoch to the last and stuck at chance (val acc 0.10); leaky ReLU has
no dead units but its 0.01 slope passes too little gradient through 4
mostly-off layers, so it is stuck too; PReLU learns its slopes and ELU
saturates at -1 instead of 0: both turn their off units back on (inactive
fraction falls toward 0) and reach ~0.95-0.97. high_learning_rate: ReLU's
dead fraction grows from 0 to ~10% during training and it ends well below
leaky ReLU, which has none; at this learning rate PReLU and ELU diverge
(NaN loss): a high learning rate is a problem of its own that no activation
fixes.

Run: `python examples/dead_units.py` (about 1 minute), or `--smoke`.
Writes `results.json` and `dead_units.png` under `--out`.
"""

import argparse
import json
import math
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_activations  # noqa: E402
from keras_activations.compare import data as data_lib  # noqa: E402
from keras_activations.compare import models  # noqa: E402

ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu")
SETUPS = {
    "negative_bias": {"bias": -0.5, "learning_rate": 0.01, "depth": 4},
    "high_learning_rate": {"bias": 0.0, "learning_rate": 0.08, "depth": 6},
}


def build(name, depth, bias, width=64, seed=0):
    """Flatten -> depth x (Dense(width, He, bias) -> activation) -> softmax."""
    choice = models.resolve(name)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    for i in range(depth):
        x = keras.layers.Dense(
            width,
            kernel_initializer=keras.initializers.HeNormal(seed=seed + i),
            bias_initializer=keras.initializers.Constant(bias),
            name=f"dense_{i:02d}",
        )(x)
        x = models.activation_layer(choice, f"act_{i:02d}")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name=f"dead_units_{name}")


class InactiveFraction(keras.callbacks.Callback):
    """Share of hidden units with pre-activation <= 0 on every training example, per epoch."""

    def __init__(self, x):
        super().__init__()
        self.x = x
        self.fractions = []
        self._probe = None

    def on_train_begin(self, logs=None):
        dense = [l for l in self.model.layers if l.name.startswith("dense_")]
        self._probe = keras.Model(self.model.input, [l.output for l in dense])

    def on_epoch_end(self, epoch, logs=None):
        outputs = self._probe(self.x, training=False)
        off = [np.all(np.asarray(z) <= 0, axis=0).mean() for z in outputs]
        self.fractions.append(float(np.mean(off)))


def train(name, setup, data, epochs, seed=0):
    """Trains one activation in one set-up; returns its per-epoch figures."""
    keras.utils.set_random_seed(seed)
    model = build(name, setup["depth"], setup["bias"], seed=seed)
    model.compile(
        optimizer=keras.optimizers.SGD(setup["learning_rate"], momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    monitor = keras_activations.GradientMonitor(
        layers=[l.name for l in model.layers if l.name.startswith("act_")],
        dead_warning_threshold=None,
    )
    inactive = InactiveFraction(data.train_arrays()[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(
            data.train_dataset(),
            validation_data=data.validation_dataset(),
            epochs=epochs,
            callbacks=[monitor, inactive],
            verbose=0,
            shuffle=False,
        )
    dead = []
    for record in monitor.history:
        values = [s["dead_fraction"] for s in record["layers"].values()
                  if s.get("dead_fraction") is not None]
        dead.append(float(np.mean(values)) if values else 0.0)
    return {
        "dead_fraction": dead,
        "inactive_fraction": inactive.fractions,
        "loss": [float(v) for v in history.history["loss"]],
        "val_accuracy": [float(v) for v in history.history["val_accuracy"]],
    }


def main(argv=None):
    """Runs both set-ups; returns the results dict also written to results.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=os.path.join("runs", "examples", "dead_units"))
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run for tests: negative_bias only, 2 epochs, "
                        "relu and elu, 400 examples")
    args = parser.parse_args(argv)
    epochs = 2 if args.smoke else args.epochs
    setups = ["negative_bias"] if args.smoke else list(SETUPS)
    names = ("relu", "elu") if args.smoke else ACTIVATIONS
    os.makedirs(args.out, exist_ok=True)
    data = data_lib.load_data("digits", max_examples=400 if args.smoke else None)

    results = {"epochs": epochs, "setups": {}}
    for setup_name in setups:
        setup = SETUPS[setup_name]
        print(f"\n{setup_name}: depth {setup['depth']}, bias {setup['bias']}, "
              f"SGD learning rate {setup['learning_rate']} (momentum 0.9)")
        print(f"  {'activation':<11} {'dead first->last':>17} "
              f"{'inactive first->last':>21} {'val acc':>8} {'loss':>8}")
        results["setups"][setup_name] = {"config": setup, "runs": {}}
        for name in names:
            run = train(name, setup, data, epochs)
            results["setups"][setup_name]["runs"][name] = run
            loss = run["loss"][-1]
            print(f"  {name:<11} {run['dead_fraction'][0]:>8.2f} -> "
                  f"{run['dead_fraction'][-1]:<5.2f}  "
                  f"{run['inactive_fraction'][0]:>10.2f} -> "
                  f"{run['inactive_fraction'][-1]:<5.2f}    "
                  f"{run['val_accuracy'][-1]:>8.3f} "
                  f"{loss if math.isfinite(loss) else float('nan'):>8.3f}")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    _plot(results, os.path.join(args.out, "dead_units.png"))
    print(f"\nWrote {args.out}/results.json and dead_units.png")
    return results


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setups = list(results["setups"])
    fig, axes = plt.subplots(1, len(setups), figsize=(6 * len(setups), 4), squeeze=False)
    for ax, setup_name in zip(axes[0], setups):
        for i, (name, run) in enumerate(results["setups"][setup_name]["runs"].items()):
            epochs = range(1, len(run["dead_fraction"]) + 1)
            ax.plot(epochs, run["dead_fraction"], color=f"C{i}", marker="o",
                    label=f"{name} dead")
            ax.plot(epochs, run["inactive_fraction"], color=f"C{i}", linestyle="--",
                    label=f"{name} inactive")
        ax.set_title(setup_name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("fraction of hidden units")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
