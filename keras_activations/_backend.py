"""TensorFlow import, dtype checks and small tensor helpers shared by the activations."""

from __future__ import annotations

import os

try:
    import tensorflow as tf
except ImportError as exc:  # pragma: no cover - exercised only without TensorFlow
    raise ImportError(
        "keras_activations needs TensorFlow, which is not installed. Install the package with an extra "
        "that brings it: `pip install 'keras-activations[cpu]'` (tensorflow-cpu) or "
        "`pip install 'keras-activations[gpu]'` (tensorflow[and-cuda])."
    ) from exc

FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
HALF_DTYPES = (tf.float16, tf.bfloat16)

# The forward and backward bodies are XLA-compiled: one fused pass each. (Their expm1 is exact near 0
# in every backend, see activations/_math.py, where the graph-mode Eigen kernels behind tf.nn.elu
# compute exp(x) - 1 and lose all precision.) Setting
# KERAS_ACTIVATIONS_XLA=0 runs the same bodies as plain TensorFlow ops (for platforms without XLA).
USE_XLA = os.environ.get("KERAS_ACTIVATIONS_XLA", "1") != "0"


def compiled(fn):
    """Wraps a pure tensor function as an XLA-compiled `tf.function` (or a plain one without XLA)."""
    return tf.function(fn, jit_compile=USE_XLA or None, reduce_retracing=True, autograph=False)


def as_float_tensor(x, activation: str, argument: str = "x") -> tf.Tensor:
    """Converts `x` to a tensor and checks that it is floating point.

    Raises:
        TypeError: naming the activation and argument, for integer, boolean, string or complex input.
    """
    if not isinstance(x, (tf.Tensor, tf.Variable)) and not hasattr(x, "dtype"):
        x = tf.convert_to_tensor(x, dtype=tf.float32)
    else:
        x = tf.convert_to_tensor(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{activation}: argument `{argument}` must be a floating-point tensor "
            f"(float16, bfloat16, float32 or float64), got dtype {x.dtype.name}. "
            f"Cast it first, e.g. tf.cast({argument}, tf.float32)."
        )
    return x


def param_tensor(value, dtype, activation: str, argument: str) -> tf.Tensor:
    """Converts a (possibly learned) parameter to a tensor of the input's dtype, keeping its gradient."""
    if not hasattr(value, "dtype"):  # Python numbers and lists: no detour through float32
        value = tf.convert_to_tensor(value, dtype=dtype)
    value = tf.convert_to_tensor(value)
    if not (value.dtype.is_floating or value.dtype.is_integer):
        raise TypeError(
            f"{activation}: argument `{argument}` must be real-valued, got dtype {value.dtype.name}."
        )
    return tf.cast(value, dtype) if value.dtype != dtype else value


def unbroadcast(grad: tf.Tensor, shape: tf.Tensor, dtype) -> tf.Tensor:
    """Sums `grad` (shaped like the broadcast result) down to `shape`, accumulating half types in float32."""
    accumulate = tf.float32 if grad.dtype in HALF_DTYPES else grad.dtype
    grad = tf.cast(grad, accumulate)
    _, axes = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(grad), s1=shape)
    summed = tf.reshape(tf.reduce_sum(grad, axis=axes), shape)
    return tf.cast(summed, dtype)


def is_functional_model(model) -> bool:
    """Whether `model` is a Functional Keras model (Keras has no public name for the class)."""
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def cloning_scope():
    """A scope in which `keras.models.clone_model` may re-create `Lambda` layers.

    Cloning a model that is already in memory re-creates its layers from their configs, which
    Keras's safe mode refuses for Python lambdas; the lambdas are the running program's own
    (a `.keras` file with one already had to pass safe mode to be loaded), so nothing new runs.
    """
    from keras.src.saving.serialization_lib import SafeModeScope

    return SafeModeScope(False)
