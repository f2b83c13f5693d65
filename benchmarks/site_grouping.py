"""Benchmark: a training step's site figures per call, against the site calls
grouped into one tensor (fewer ops to trace, more work per step).

GradientMonitor reduces each activation site call on its own: per unit the
count of positive outputs, and the sum and sum of squares of the outputs.
Grouping the calls would trace fewer ops, but a stack is safe only when
every call has the same batch (a `TimeDistributed` inner layer's batch is
batch x time), and a concatenation needs a segment sum per call. This times
the three on 8 calls of a 128x256 ReLU output, with float ops (the path of a
step whose outputs are finite) and with comparisons (the masked path),
interleaved, medians of 7 repetitions of 200 calls.

    python benchmarks/site_grouping.py
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

CALLS, BATCH, UNITS = 8, 128, 256


@tf.function
def per_call(ys):
    return [(tf.reduce_sum(tf.sign(y), axis=[0]), tf.reduce_sum(y), tf.nn.l2_loss(y)) for y in ys]


@tf.function
def per_call_masked(ys):
    return [
        (
            tf.reduce_sum(tf.cast(y > 0, tf.float32), axis=[0]),
            tf.reduce_sum(tf.cast(y <= 0, tf.float32), axis=[0]),
            tf.reduce_sum(y),
            tf.nn.l2_loss(y),
        )
        for y in ys
    ]


@tf.function
def stacked(ys):
    r = tf.stack(ys, 0)
    return tf.reduce_sum(tf.sign(r), 1), tf.reduce_sum(r, [1, 2]), tf.reduce_sum(tf.square(r), [1, 2])


@tf.function
def stacked_masked(ys):
    r = tf.stack(ys, 0)
    return (
        tf.reduce_sum(tf.cast(r > 0, tf.float32), 1),
        tf.reduce_sum(tf.cast(r <= 0, tf.float32), 1),
        tf.reduce_sum(r, [1, 2]),
        tf.reduce_sum(tf.square(r), [1, 2]),
    )


def _segments(ys):
    return tf.repeat(tf.range(len(ys)), [tf.shape(y)[0] for y in ys])


@tf.function
def concatenated(ys):
    r, ids = tf.concat(ys, 0), _segments(ys)
    return (
        tf.math.segment_sum(tf.sign(r), ids),
        tf.math.segment_sum(tf.reduce_sum(r, 1), ids),
        tf.math.segment_sum(tf.reduce_sum(tf.square(r), 1), ids),
    )


@tf.function
def concatenated_masked(ys):
    r, ids = tf.concat(ys, 0), _segments(ys)
    return (
        tf.math.segment_sum(tf.cast(r > 0, tf.float32), ids),
        tf.math.segment_sum(tf.cast(r <= 0, tf.float32), ids),
        tf.math.segment_sum(tf.reduce_sum(r, 1), ids),
        tf.math.segment_sum(tf.reduce_sum(tf.square(r), 1), ids),
    )


def main(repeats=7, calls=200):
    rng = np.random.RandomState(0)
    ys = [tf.constant(np.maximum(rng.randn(BATCH, UNITS), 0).astype("float32")) for _ in range(CALLS)]
    variants = {
        "per call (GradientMonitor)": (per_call, per_call_masked),
        "stacked": (stacked, stacked_masked),
        "concatenated, a segment sum per call": (concatenated, concatenated_masked),
    }
    times = {(name, k): [] for name in variants for k in (0, 1)}
    for fns in variants.values():
        for fn in fns:
            fn(ys)  # trace
    for _ in range(repeats):
        for name, fns in variants.items():
            for k, fn in enumerate(fns):
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn(ys)
                times[name, k].append((time.perf_counter() - t0) / calls)
    print(f"{CALLS} site calls of a {BATCH}x{UNITS} ReLU output, per step (medians of {repeats} x {calls})")
    print()
    print("| site figures | float ops (finite step) | comparisons (masked) |")
    print("|---|---|---|")
    for name in variants:
        print(f"| {name} | {np.median(times[name, 0]) * 1e6:.0f} µs | {np.median(times[name, 1]) * 1e6:.0f} µs |")


if __name__ == "__main__":
    main()
