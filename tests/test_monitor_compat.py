"""The private Keras/TensorFlow names of `monitor/compat.py` still exist, and
watching changes nothing bit for bit with oneDNN on and off.

When a Keras release moves a private name, the first test here fails with
the name, before any monitor test fails for an obscure reason.
"""

import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest
import tensorflow as tf

from keras_activations.monitor import compat


def test_the_installed_keras_is_in_the_tested_range():
    from packaging.specifiers import SpecifierSet

    assert keras.__version__ in SpecifierSet(compat.KERAS_TESTED), (
        f"Keras {keras.__version__} is outside the range the monitor is tested "
        f"with ({compat.KERAS_TESTED}); test it and widen KERAS_TESTED and setup.cfg."
    )


def test_private_names_exist():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="relu")])
    model.compile(optimizer="sgd", loss="mse")
    optimizer = model.optimizer
    owner = compat.gradient_hook_owner(optimizer)
    assert callable(getattr(owner, compat.GRADIENT_HOOK))
    dense = model.layers[0]
    assert compat.variable_key(owner, dense.kernel) == compat.variable_key(owner, dense.kernel.value)
    assert dense in compat.flatten_layers(model)
    assert compat.own_trainable_variables(dense) == [dense.kernel, dense.bias]
    functional = keras.Model(model.inputs, model.outputs)
    assert compat.parent_layers(dense) is not None
    assert dense in compat.flatten_layers(functional)
    out = compat.symbolic_call(model, keras.KerasTensor((None, 3)))
    assert tuple(out.shape) == (None, 2)

    def wrapper(x):
        return x

    registered = keras.saving.get_registered_object("keras_activations>elu")
    assert registered is not None
    assert compat.register_alias(wrapper, registered)
    assert keras.saving.get_registered_name(wrapper) == "keras_activations>elu"
    compat.unregister_alias(wrapper)
    assert keras.saving.get_registered_name(wrapper) != "keras_activations>elu"
    assert compat.is_chief(tf.distribute.get_strategy())
    mixed = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())
    assert compat.gradient_hook_owner(mixed) is mixed.inner_optimizer


_UNCHANGED = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np, keras, tensorflow as tf
    import keras_activations as ka
    from keras_activations import GradientMonitor

    def run(kind, with_monitor):
        keras.utils.set_random_seed(7)
        if kind == "dense":
            layers = [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.3),
                      keras.layers.Dense(8, activation="elu"), keras.layers.Dense(8, activation="sigmoid"),
                      keras.layers.Dense(8), keras.layers.LeakyReLU(0.1), keras.layers.Dense(8, activation="selu"),
                      keras.layers.Dense(8), ka.ELU(), keras.layers.Dense(1)]
            x = np.random.RandomState(1).rand(32, 4).astype("float32")
        else:
            layers = [keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3, activation="relu"),
                      keras.layers.Conv2D(4, 3, activation="tanh"), keras.layers.Flatten(), keras.layers.Dense(1)]
            x = np.random.RandomState(1).rand(32, 6, 6, 2).astype("float32")
        model = keras.Sequential(layers)
        model.compile(optimizer="adam", loss="mse")
        y = np.random.RandomState(2).randn(32, 1).astype("float32")
        monitors = [GradientMonitor(update_freq=2, dead_warning_threshold=None),
                    GradientMonitor(dead_warning_threshold=None)] if with_monitor else []
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=monitors)
        return [w.numpy() for w in model.weights]

    for kind in ("dense", "conv"):
        for a, b in zip(run(kind, False), run(kind, True)):
            np.testing.assert_array_equal(a, b, err_msg=kind)
    print("UNCHANGED")
    """
)


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_watching_changes_nothing_with_onednn_on_and_off(onednn):
    # Every site is read through its output (or, for this package's own
    # activations, which TensorFlow never fuses, its input): TensorFlow
    # fuses the same kernels with and without the monitor.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, PYTHONPATH=root)
    proc = subprocess.run(
        [sys.executable, "-c", _UNCHANGED], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0 and "UNCHANGED" in proc.stdout, proc.stderr[-3000:]
