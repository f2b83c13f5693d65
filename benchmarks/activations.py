"""Forward+backward speed of each activation beside the nearest built-in and the identity floor.

    python benchmarks/activations.py [--size 16777216] [--reps 7] [--quick]

Every function runs forward and backward on the same float32 tensor, in graph mode (`tf.function`)
and under XLA (`jit_compile=True`). Repetitions are interleaved round-robin so that machine noise hits
every row alike; the table shows medians and ratios measured in this one run: to `tf.identity` (the
memory-bound floor) and to the nearest built-in.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

import keras_activations as ka


def _keras_prelu(x):
    layer = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1])
    layer.build(x.shape)
    return layer


def cases(x):
    """(name, function, nearest built-in name); built-ins have None as their reference."""
    ours_prelu = ka.PReLU(shared_axes=[1])
    ours_prelu.build(x.shape)
    keras_prelu = _keras_prelu(x)
    return [
        ("tf.identity (floor)", tf.identity, None),
        ("tf.nn.relu", tf.nn.relu, None),
        ("tf.nn.leaky_relu", tf.nn.leaky_relu, None),
        ("tf.nn.elu", tf.nn.elu, None),
        ("tf.nn.selu", tf.nn.selu, None),
        ("keras elu(alpha=0.5)", lambda t: keras.activations.elu(t, alpha=0.5), None),
        ("keras celu(alpha=1)", keras.activations.celu, None),
        ("keras celu(alpha=0.5)", lambda t: keras.activations.celu(t, alpha=0.5), None),
        ("keras.layers.PReLU", keras_prelu, None),
        ("elu", ka.elu, "tf.nn.elu"),
        ("elu(alpha=0.5)", lambda t: ka.elu(t, alpha=0.5), "tf.nn.elu"),
        ("selu", ka.selu, "tf.nn.elu"),
        ("celu", ka.celu, "tf.nn.elu"),
        ("celu(alpha=0.5)", lambda t: ka.celu(t, alpha=0.5), "tf.nn.elu"),
        ("pelu", ka.pelu, "tf.nn.elu"),
        ("isrlu", ka.isrlu, "tf.nn.elu"),
        ("leaky_relu", ka.leaky_relu, "tf.nn.leaky_relu"),
        ("leaky_relu(slope=0) = relu", lambda t: ka.leaky_relu(t, 0.0), "tf.nn.leaky_relu"),
        ("abs_rectifier", ka.abs_rectifier, "tf.nn.leaky_relu"),
        ("rrelu (inference)", ka.rrelu, "tf.nn.leaky_relu"),
        ("PReLU layer", ours_prelu, "keras.layers.PReLU"),
    ]


def forward_backward(fn, jit):
    @tf.function(jit_compile=jit)
    def step(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return tape.gradient(y, x, output_gradients=dy)

    return step


def measure(rows, x, dy, jit, reps):
    steps = [forward_backward(fn, jit) for _, fn, _ in rows]
    for step in steps:  # trace, compile and warm up
        step(x, dy)
        step(x, dy)
    times = [[] for _ in rows]
    for _ in range(reps):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            step(x, dy)
            times[i].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16 * 1024 * 1024, help="elements (default 16M)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per row (median)")
    parser.add_argument("--quick", action="store_true", help="1M elements, 3 repetitions")
    args = parser.parse_args(argv)
    size, reps = (1 << 20, 3) if args.quick else (args.size, args.reps)

    x = tf.random.normal([size // 256, 256], seed=0)
    dy = tf.random.normal([size // 256, 256], seed=1)
    rows = cases(x)
    names = [r[0] for r in rows]
    results = {jit: measure(rows, x, dy, jit, reps) for jit in (False, True)}

    print(f"Forward+backward of {size:,} float32 elements, median of {reps}, {tf.config.threading.get_intra_op_parallelism_threads() or 'all'} threads")
    print()
    print("| activation | graph ms | graph / identity | graph / built-in | XLA ms | XLA / built-in |")
    print("|---|---:|---:|---:|---:|---:|")
    for i, (name, _, builtin) in enumerate(rows):
        graph, xla = results[False][i], results[True][i]
        floor = results[False][0]
        if builtin is None:
            vs_graph = vs_xla = "—"
        else:
            j = names.index(builtin)
            vs_graph = f"{graph / results[False][j]:.2f}"
            vs_xla = f"{xla / results[True][j]:.2f}"
        print(f"| {name} | {graph * 1e3:.1f} | {graph / floor:.2f} | {vs_graph} | {xla * 1e3:.1f} | {vs_xla} |")


if __name__ == "__main__":
    main()
