"""Maxout learns piecewise-linear convex functions: one unit with k pieces fitting |x| and x^2.

What it shows (seed 002, Goodfellow et al. 2013): a maxout unit
max_j(w_j x + b_j) is a convex piecewise-linear function with at most k
pieces, so it can represent |x| exactly with k = 2 (a rectifier family
member) and approximate any convex function, with an error that shrinks as
k grows; for a smooth curve like x^2 the best k-piece approximation's mean
squared error falls like 1/k^4 (its maximum error like 1/k^2).

How: for each target and k in 1, 2, 3, 4, 6, 8, the network
`Input(1) -> Dense(k) -> keras_activations.Maxout(num_units=1)` is fitted
by Adam to 512 points on [-1, 1] (mean squared error), and evaluated on a
dense grid. The k lines start as tangents of a parabola at random points so
that each starts out winning somewhere (a line that never wins the max
gets no gradient and stays unused). `Maxout.winning_piece` counts the
pieces the fitted unit actually uses.

Expected result (measured here): |x|: MSE 0.084 with k = 1 (a line can only
fit the mean; 1/12 is the best possible), then below 1e-11 for every k >= 2
(exact up to float32). x^2: MSE 0.090, 5.6e-3, 1.1e-3, 3.6e-4, 7.5e-5,
2.3e-5 for k = 1, 2, 3, 4, 6, 8, all pieces used, within 10% of the best
possible k-piece least-squares fit ((2/k)^4 / 180, printed alongside):
about 16x less error each time k doubles.

Run: `python examples/maxout_convex.py` (about 20 s), or `--smoke`.
Writes `results.json` and `maxout_convex.png` under `--out`.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_activations  # noqa: E402

TARGETS = {"abs": np.abs, "square": np.square}


def tangent_initializer(k, seed):
    """Slopes and biases of k tangents to y = x^2 at random points of [-1, 1].

    One point falls in each of k equal bins (stratified), so every line
    starts out winning the max somewhere.
    """
    rng = np.random.default_rng(seed)
    points = -1.0 + (np.arange(k) + rng.uniform(size=k)) * (2.0 / k)
    slopes = 2 * points
    biases = -points**2
    return slopes.reshape(1, k).astype("float32"), biases.astype("float32")


def maxout_unit(k, seed=0):
    """`Input(1) -> Dense(k) -> Maxout(1)`: one maxout unit with k pieces."""
    inputs = keras.Input((1,))
    dense = keras.layers.Dense(k, name="pieces")
    outputs = keras_activations.Maxout(num_units=1, name="maxout")(dense(inputs))
    model = keras.Model(inputs, outputs)
    slopes, biases = tangent_initializer(k, seed)
    dense.set_weights([slopes, biases])
    return model


def fit(target, k, steps=1500, seed=0, learning_rate=0.02):
    """Fits one maxout unit to `target` on [-1, 1]; returns (model, mse, max_error)."""
    keras.utils.set_random_seed(seed)
    x = np.random.default_rng(seed).uniform(-1, 1, size=(512, 1)).astype("float32")
    y = TARGETS[target](x).astype("float32")
    model = maxout_unit(k, seed)
    optimizer = keras.optimizers.Adam(learning_rate)
    variables = model.trainable_variables

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    for _ in range(steps):
        step()
    grid = np.linspace(-1, 1, 2001, dtype="float32").reshape(-1, 1)
    error = model.predict(grid, verbose=0) - TARGETS[target](grid)
    return model, float(np.mean(error**2)), float(np.max(np.abs(error)))


def optimal_square_mse(k):
    """Least-squares error of the best k-piece convex fit of x^2 on uniform [-1, 1].

    Equal pieces of width h = 2/k, each the secant shifted down by its mean
    gap h^2/6: the error's variance on a piece is h^4/30 - h^4/36 = h^4/180.
    """
    return (2.0 / k) ** 4 / 180.0


def pieces_used(model):
    """How many of the k pieces win somewhere on [-1, 1]."""
    grid = np.linspace(-1, 1, 2001, dtype="float32").reshape(-1, 1)
    z = model.get_layer("pieces")(grid)
    winners = model.get_layer("maxout").winning_piece(z).numpy()
    return int(len(np.unique(winners)))


def main(argv=None):
    """Runs the experiment; returns the results dict also written to results.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", default="1,2,3,4,6,8",
                        help="comma-separated values of k")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default=os.path.join("runs", "examples",
                                                      "maxout_convex"))
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run for tests: k = 1, 2, 4 and fewer steps")
    args = parser.parse_args(argv)
    ks = [1, 2, 4] if args.smoke else [int(k) for k in args.pieces.split(",")]
    steps = 400 if args.smoke else args.steps
    os.makedirs(args.out, exist_ok=True)

    results = {"pieces": ks, "steps": steps}
    print(f"{'target':<8} {'k':>3} {'MSE':>10} {'max error':>10} {'pieces used':>12}"
          f"{'best MSE':>12}")
    for target in TARGETS:
        rows = []
        for k in ks:
            model, mse, max_error = fit(target, k, steps=steps)
            used = pieces_used(model)
            row = {"k": k, "mse": mse, "max_error": max_error, "used": used}
            if target == "square":
                row["optimal_mse"] = optimal_square_mse(k)
            rows.append(row)
            best = f"{row['optimal_mse']:>12.2e}" if "optimal_mse" in row else ""
            print(f"{target:<8} {k:>3} {mse:>10.2e} {max_error:>10.2e} {used:>12}{best}")
        results[target] = rows
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    _plot(results, ks, os.path.join(args.out, "maxout_convex.png"))
    print(f"Wrote {args.out}/results.json and maxout_convex.png")
    return results


def _plot(results, ks, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for target in TARGETS:
        ax.plot(ks, [max(r["mse"], 1e-12) for r in results[target]],
                marker="o", label=f"{target}(x)")
    ax.set_yscale("log")
    ax.set_xlabel("pieces k")
    ax.set_ylabel("mean squared error on [-1, 1]")
    ax.set_title("One maxout unit fitting convex functions")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
