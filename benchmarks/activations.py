"""Speed of each activation beside the nearest built-in: one tensor, and training steps end to end.

    python benchmarks/activations.py [--size 16777216] [--reps 7] [--quick] [--part tensor|training|all]

One tensor: every function runs forward and backward on the same float32 tensor, in graph mode
(`tf.function`) and under XLA (`jit_compile=True`); ratios to `tf.identity` (the memory-bound floor)
and to the nearest built-in.

End to end: an SGD training step (forward, backward, update) of a small CNN (four 3x3 Conv2D layers of
32, 32, 64 and 64 channels, 32x32x3 inputs, batch 64) and of a 10-layer MLP (256 units, batch 64),
every activation site the same activation, in graph mode and with `jit_compile=True`; ratios to ReLU
and to Keras's equivalent where Keras has one.

Repetitions are interleaved round-robin so that machine noise hits every row alike; the tables show
medians and ratios measured in this one run. `--quick` (1M elements, 3 repetitions) takes about 2.5
minutes on 2 cores, the default about 4.5.
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


def interleaved(calls, reps):
    """Median seconds of each zero-argument call, repetitions interleaved round-robin."""
    for call in calls:  # trace, compile and warm up
        call()
        call()
    times = [[] for _ in calls]
    for _ in range(reps):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def measure(rows, x, dy, jit, reps):
    steps = [forward_backward(fn, jit) for _, fn, _ in rows]
    return interleaved([lambda step=step: step(x, dy) for step in steps], reps)


def tensor_table(size, reps):
    """The forward+backward table of one tensor."""
    x = tf.random.normal([size // 256, 256], seed=0)
    dy = tf.random.normal([size // 256, 256], seed=1)
    rows = cases(x)
    names = [r[0] for r in rows]
    results = {jit: measure(rows, x, dy, jit, reps) for jit in (False, True)}

    print(f"Forward+backward of {size:,} float32 elements, median of {reps}, {_threads()} threads")
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


def _threads():
    return tf.config.threading.get_intra_op_parallelism_threads() or "all"

# --- End to end: training steps of a small CNN and an MLP -------------------------------------------

class After:
    """A layer placed after each Dense/Conv2D layer (built anew per site by `factory`)."""

    def __init__(self, factory):
        self.factory = factory


def training_cases(conv):
    """(label, activation, label of Keras's equivalent or None). An activation is what the Dense or
    Conv2D layer's `activation=` gets, or `After(factory)` for an activation layer after it."""
    shared = {"shared_axes": [1, 2]} if conv else {}
    suffix = "(shared_axes=[1, 2])" if conv else ""
    return [
        ("relu", "relu", None),
        ("keras elu", "elu", None),
        ("keras ELU(alpha=0.5)", After(lambda: keras.layers.ELU(alpha=0.5)), None),
        ("keras selu", "selu", None),
        ("keras celu", keras.activations.celu, None),
        ("keras LeakyReLU(0.2)", After(lambda: keras.layers.LeakyReLU(negative_slope=0.2)), None),
        ("keras PReLU" + suffix, After(lambda: keras.layers.PReLU(**shared)), None),
        ("elu", ka.elu, "keras elu"),
        ("ELU(alpha=0.5)", After(lambda: ka.ELU(alpha=0.5)), "keras ELU(alpha=0.5)"),
        ("selu", ka.selu, "keras selu"),
        ("celu", ka.celu, "keras celu"),
        ("LeakyReLU(0.2)", After(lambda: ka.LeakyReLU(negative_slope=0.2)), "keras LeakyReLU(0.2)"),
        ("PReLU" + suffix, After(lambda: ka.PReLU(**shared)), "keras PReLU" + suffix),
        ("PELU" + suffix, After(lambda: ka.PELU(**shared)), None),
        ("isrlu", ka.isrlu, None),
        ("abs_rectifier", ka.abs_rectifier, None),
        ("RReLU (training)", After(lambda: ka.RReLU(seed=0)), None),
        # ReLU itself as one of ours: what a separate pass costs where ReLU fuses into the layer.
        ("leaky_relu(0) = relu", lambda x: ka.leaky_relu(x, 0.0), None),
    ]


def _site(layer_class, activation, **kwargs):
    if isinstance(activation, After):
        return [layer_class(**kwargs), activation.factory()]
    return [layer_class(activation=activation, **kwargs)]


def cnn(activation):
    """Four 3x3 Conv2D layers (32, 32, 64, 64 channels), 32x32x3 inputs, ten classes."""
    layers = [keras.Input((32, 32, 3))]
    for i, filters in enumerate((32, 32, 64, 64)):
        layers += _site(keras.layers.Conv2D, activation, filters=filters, kernel_size=3, padding="same")
        if i % 2:
            layers.append(keras.layers.MaxPooling2D())
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    return keras.Sequential(layers)


def mlp(activation, width=256, depth=10):
    """A 10-layer MLP: nine hidden Dense layers of 256 units and the output layer, 256 inputs."""
    layers = [keras.Input((width,))]
    for _ in range(depth - 1):
        layers += _site(keras.layers.Dense, activation, units=width)
    layers.append(keras.layers.Dense(10))
    return keras.Sequential(layers)


def train_step(model, jit):
    """One SGD training step (forward, backward, update), as `fit` runs it."""
    optimizer = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    return step


# Targets of the end-to-end table in graph mode, as ratios to ReLU: learned-parameter activations
# 1.25x, the rest 1.10x; Keras's own rows and RReLU in training (a random draw per element) have none.
LEARNED = ("PReLU", "PELU")


def _target(label, reference):
    if label.startswith(("keras", "relu", "RReLU", "leaky_relu(0)")):
        return None
    return 1.25 if label.startswith(LEARNED) else 1.10


MODELS = {
    "CNN": (cnn, (64, 32, 32, 3), True, 1),   # builder, batch shape, convolutional, steps per timing
    "MLP": (mlp, (64, 256), False, 10),
}


def training_table(model_name, reps):
    """The end-to-end table of one model: training-step time over ReLU's and over Keras's."""
    build, shape, conv, inner = MODELS[model_name]
    rows = training_cases(conv)
    names = [r[0] for r in rows]
    rng = np.random.RandomState(0)
    x = tf.constant(rng.randn(*shape).astype("float32"))
    y = tf.constant(rng.randint(0, 10, shape[0]))
    results = {}
    for jit in (False, True):
        steps = []
        for _, activation, _ in rows:
            keras.utils.set_random_seed(0)
            steps.append(train_step(build(activation), jit))

        def call(step):
            for _ in range(inner):
                loss = step(x, y)
            return loss.numpy()

        results[jit] = [t / inner for t in interleaved([lambda s=s: call(s) for s in steps], reps)]

    relu = {jit: results[jit][0] for jit in results}
    print(f"{model_name} training step, batch {shape[0]}, every site the same activation; median of {reps} "
          f"interleaved repetitions, {_threads()} threads; ReLU's step: {relu[False] * 1e3:.1f} ms in graph "
          f"mode, {relu[True] * 1e3:.1f} ms with jit_compile=True")
    print()
    print("| activation | graph / ReLU | graph / Keras's | graph target (/ ReLU) | XLA / ReLU | XLA / Keras's |")
    print("|---|---:|---:|---:|---:|---:|")
    for i, (name, _, equivalent) in enumerate(rows):
        cells = [name]
        for jit in (False, True):
            cells.append(f"{results[jit][i] / relu[jit]:.2f}")
            if equivalent is None:
                cells.append("—")
            else:
                cells.append(f"{results[jit][i] / results[jit][names.index(equivalent)]:.2f}")
            if not jit:
                target = _target(name, equivalent)
                cells.append("—" if target is None else f"{target:.2f}")
        print("| " + " | ".join(cells) + " |")
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16 * 1024 * 1024, help="elements (default 16M)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per row (median)")
    parser.add_argument("--quick", action="store_true", help="1M elements, 3 repetitions")
    parser.add_argument("--part", choices=["tensor", "training", "all"], default="all",
                        help="the one-tensor table, the end-to-end training tables, or both (default)")
    parser.add_argument("--models", default="CNN,MLP", help="end-to-end models (default CNN,MLP)")
    args = parser.parse_args(argv)
    size, reps = (1 << 20, 3) if args.quick else (args.size, args.reps)
    if args.part in ("tensor", "all"):
        tensor_table(size, reps)
        print()
    if args.part in ("training", "all"):
        for name in args.models.split(","):
            training_table(name, reps)


if __name__ == "__main__":
    main()
