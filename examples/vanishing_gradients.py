"""Vanishing gradients: the first layer's gradient against depth, sigmoid/tanh vs ReLU/SELU.

What it shows (seeds 000 and 001; Hirn's lecture notes, eq. 23): the gradient
reaching the first layer of a deep network is a product of one factor
f'(z_l) * W_l per layer. sigmoid' <= 1/4, so with sigmoid the product shrinks
geometrically with depth and the first layers stop learning; tanh' <= 1
shrinks it more slowly; ReLU (He init) passes 1 on its active half and SELU
(LeCun-normal init) is built to keep it stable. For SELU it also checks
Klambauer et al. 2017 (arXiv 1706.02515): with standardized inputs and
LeCun-normal weights, every layer's activations keep mean ~0 and variance ~1.

How: for each depth (2..20) and activation, an untrained MLP of width 64 on
a batch of scikit-learn's digits (standardized per pixel), the norm of the
loss gradient w.r.t. the first Dense kernel, averaged (geometric mean) over
3 seeds. No training is needed: vanishing is there from the first step.

Expected result (measured here, 3 seeds): the sigmoid network's first-layer
gradient norm falls by about 11 orders of magnitude from depth 2 to 20
(0.095 -> 7e-13, i.e. ~3e-12 of ReLU's at depth 20); tanh's and ReLU's shrink
only by a factor of ~3-4 (0.99 -> 0.36, 1.07 -> 0.27) and SELU's stays flat
(2.0 -> 2.5). At depth 20 SELU's per-layer means stay within 0.04 of 0 and
variances within 0.89..1.08 (the paper's fixed point (0, 1)), while ReLU's
means are positive (+0.14..+0.56, bias shift) and variances drift (0.05..0.75).

Run: `python examples/vanishing_gradients.py` (about 30 s), or `--smoke`.
Writes `results.json` and `vanishing_gradients.png` under `--out`.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_activations.compare import data as data_lib  # noqa: E402
from keras_activations.compare import models  # noqa: E402

ACTIVATIONS = ("sigmoid", "tanh", "relu", "selu")


def standardized_batch(size, seed=0):
    """`size` digits images, each pixel standardized to mean 0, std 1 over the set."""
    data = data_lib.load_data("digits", seed=seed)
    x, y = data.train_arrays()
    mean, std = x.mean(axis=0), x.std(axis=0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
    return x[:size].astype("float32"), y[:size]


def first_layer_gradient_norm(name, depth, x, y, width=64, seed=0):
    """Norm of d(loss)/d(first kernel) of a fresh MLP, and its hidden activations."""
    keras.utils.set_random_seed(seed)
    model = models.build_model(
        models.resolve(name), x.shape[1:], 10, depth=depth, width=width, seed=seed
    )
    hidden = keras.Model(
        model.input,
        [model.get_layer(f"act_{i:02d}").output for i in range(depth)],
    )
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(y, model(x))
        )
    grad = tape.gradient(loss, model.get_layer("dense_00").kernel)
    return float(tf.norm(grad)), [h.numpy() for h in hidden(x)]


def main(argv=None):
    """Runs the experiment; returns the results dict also written to results.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="2,5,10,15,20",
                        help="comma-separated depths")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", default=os.path.join("runs", "examples",
                                                      "vanishing_gradients"))
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run for tests: depths 2,10, one seed")
    args = parser.parse_args(argv)
    depths = [2, 10] if args.smoke else [int(d) for d in args.depths.split(",")]
    seeds = 1 if args.smoke else args.seeds
    batch = 64 if args.smoke else args.batch
    os.makedirs(args.out, exist_ok=True)
    x, y = standardized_batch(batch)

    norms = {name: {} for name in ACTIVATIONS}
    stats = {}
    for name in ACTIVATIONS:
        for depth in depths:
            values = []
            for seed in range(seeds):
                norm, hidden = first_layer_gradient_norm(name, depth, x, y, seed=seed)
                values.append(norm)
                if depth == max(depths) and seed == 0:
                    stats[name] = {
                        "mean": [float(h.mean()) for h in hidden],
                        "variance": [float(h.var()) for h in hidden],
                    }
            norms[name][depth] = float(np.exp(np.mean(np.log(values))))

    print("First-layer gradient norm (geometric mean over "
          f"{seeds} seed{'s' if seeds > 1 else ''}):")
    print(f"{'depth':>6} " + " ".join(f"{n:>10}" for n in ACTIVATIONS))
    for depth in depths:
        print(f"{depth:>6} " + " ".join(f"{norms[n][depth]:>10.3g}" for n in ACTIVATIONS))
    deepest = max(depths)
    print(f"\nPer-layer activation mean / variance at depth {deepest}:")
    for name in ("selu", "relu"):
        m, v = stats[name]["mean"], stats[name]["variance"]
        print(f"  {name:<5} mean {min(m):+.3f}..{max(m):+.3f}  "
              f"variance {min(v):.3f}..{max(v):.3f}")
    ratio = norms["sigmoid"][deepest] / norms["relu"][deepest]
    print(f"\nAt depth {deepest} sigmoid's first-layer gradient is {ratio:.2g} x ReLU's.")

    results = {
        "depths": depths,
        "first_layer_gradient_norm": {
            n: {str(d): v for d, v in norms[n].items()} for n in ACTIVATIONS
        },
        "hidden_stats_at_max_depth": stats,
        "sigmoid_over_relu_at_max_depth": ratio,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    _plot(norms, depths, os.path.join(args.out, "vanishing_gradients.png"))
    print(f"Wrote {args.out}/results.json and vanishing_gradients.png")
    return results


def _plot(norms, depths, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in norms.items():
        ax.plot(depths, [values[d] for d in depths], marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("depth (hidden layers)")
    ax.set_ylabel("first-layer gradient norm")
    ax.set_title("Vanishing gradients at initialization")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
