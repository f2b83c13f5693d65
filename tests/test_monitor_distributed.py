"""GradientMonitor under MirroredStrategy (2 logical CPUs) and mixed precision.

Each case runs in a subprocess: logical devices must be configured before
TensorFlow initializes them, and the mixed precision policy is global.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

_COMMON = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_activations import GradientMonitor

    def build(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([
                keras.Input((4,)),
                keras.layers.Dense(8, activation="relu", name="h0"),
                keras.layers.Dense(8, activation="tanh", name="h1"),
                keras.layers.Dense(1, name="out"),
            ], name="net")
            model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        return model

    def summary(monitor):
        out = []
        for r in monitor.history:
            item = {"step": r["step"], "global_norm": r["global_norm"], "vars": {}, "layers": {}}
            for p, v in r["variables"].items():
                item["vars"][p] = [v["norm"], v["histogram"]["counts"].tolist(), v["histogram"]["edges"].tolist()]
            for n, l in r["layers"].items():
                h = l["activation_histogram"]
                item["layers"][n] = [l["dead_units"], l["saturation"], l["activation_mean"], l["activation_std"],
                                     l["gradient_cosine"], None if h is None else h["counts"].tolist(),
                                     l["inactive_fraction"], l["update_ratio"], l["weight_norm"]]
            out.append(item)
        return out
    """
)

_DISTRIBUTED = _COMMON + textwrap.dedent(
    """
    rng = np.random.RandomState(0)
    x = rng.rand(64, 4).astype("float32"); y = rng.randn(64, 1).astype("float32")
    results = {}
    for kind in ("single", "mirrored"):
        strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if kind == "mirrored"
                    else tf.distribute.OneDeviceStrategy("/cpu:0"))
        model = build(strategy)
        monitor = GradientMonitor(update_freq=2, dead_warning_threshold=None)
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
        results[kind] = summary(monitor)
    print("RESULT" + json.dumps(results))
    """
)

_MIXED = _COMMON + textwrap.dedent(
    """
    rng = np.random.RandomState(0)
    x = rng.rand(32, 4).astype("float32"); y = rng.randn(32, 1).astype("float32")
    results = {}
    for policy in ("float32", "mixed_float16"):
        keras.mixed_precision.set_global_policy(policy)
        model = build(tf.distribute.get_strategy())
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")  # LossScaleOptimizer when mixed
        results[policy + "_optimizer"] = type(model.optimizer).__name__
        monitor = GradientMonitor(update_freq=1, dead_warning_threshold=None)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
        results[policy] = summary(monitor)
    print("RESULT" + json.dumps(results))
    """
)

_NAN = _COMMON + textwrap.dedent(
    """
    # Each replica gets 4 of the 8 examples: the first replica's are a NaN
    # and 3 that fire every unit, the second replica's fire none.
    x = np.ones((8, 4), "float32"); x[0] = np.nan; x[4:] = -1.0
    results = {}
    for kind in ("single", "mirrored"):
        strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if kind == "mirrored"
                    else tf.distribute.OneDeviceStrategy("/cpu:0"))
        with strategy.scope():
            import keras_activations as ka
            model = keras.Sequential([  # the activation keeps the NaN on every CPU
                keras.Input((4,)),
                keras.layers.Dense(3, kernel_initializer="ones", name="pre"),
                ka.LeakyReLU(negative_slope=0.0, name="h"),
                keras.layers.Dense(1, name="out"),
            ])
            model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        monitor = GradientMonitor(update_freq=1, dead_warning_threshold=None)
        model.fit(x, np.zeros((8, 1), "float32"), batch_size=8, shuffle=False, verbose=0,
                  callbacks=[monitor])
        layer = monitor.history[0]["layers"]["h"]
        results[kind] = [layer["dead_units"], layer["inactive_fraction"]]
    print("RESULT" + json.dumps(results))
    """
)


def _run(script):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT"):])


def _close(a, b, rtol):
    if a is None or b is None:
        assert a is None and b is None
    else:
        assert a == pytest.approx(b, rel=rtol, abs=1e-6)


def test_mirrored_strategy_records_equal_single_device():
    results = _run(_DISTRIBUTED)
    single, mirrored = results["single"], results["mirrored"]
    assert [r["step"] for r in mirrored] == [r["step"] for r in single] == [2, 4]
    for s, m in zip(single, mirrored):
        _close(m["global_norm"], s["global_norm"], 1e-5)
        assert m["vars"].keys() == s["vars"].keys()
        for path in s["vars"]:
            _close(m["vars"][path][0], s["vars"][path][0], 1e-5)
            # identical counts unless a value sits on a bucket edge
            assert sum(abs(a - b) for a, b in zip(m["vars"][path][1], s["vars"][path][1])) <= 2
            assert sum(m["vars"][path][1]) == sum(s["vars"][path][1])
        for name in ("h0", "h1"):
            ms, ss = m["layers"][name], s["layers"][name]
            assert ms[0] == ss[0]  # dead units
            for i in (1, 2, 3, 4, 6, 7, 8):
                _close(ms[i], ss[i], 1e-4)
            assert sum(ms[5]) == sum(ss[5]) == 16 * 8  # histogram of the last batch, all replicas
            assert sum(abs(a - b) for a, b in zip(ms[5], ss[5])) <= 2


def test_mixed_precision_histograms_are_of_unscaled_gradients():
    results = _run(_MIXED)
    assert results["mixed_float16_optimizer"] == "LossScaleOptimizer"
    full, mixed = results["float32"], results["mixed_float16"]
    assert [r["step"] for r in mixed] == [1, 2, 3, 4]
    for f, m in zip(full, mixed):
        # a scaled gradient would be 2**15 times larger
        assert m["global_norm"] == pytest.approx(f["global_norm"], rel=0.1)  # float16 forward pass
        for path in f["vars"]:
            edges_f, edges_m = f["vars"][path][2], m["vars"][path][2]
            assert max(abs(v) for v in edges_m) < 2 * max(abs(v) for v in edges_f) + 1e-3
            assert sum(m["vars"][path][1]) == sum(f["vars"][path][1])


def test_nan_example_on_one_replica_hides_no_fired_unit():
    # The NaN example's pairs are neither fired nor saturated; the second
    # replica's 12 pairs are inactive (ReLU off), out of 24.
    results = _run(_NAN)
    assert results["single"] == results["mirrored"] == [0, 0.5]


_WORKER = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tensorflow as tf
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer
    from keras_activations import GradientMonitor

    # Keras 3.15's own fit fails under MultiWorkerMirroredStrategy, with or
    # without this package, at two places; these workarounds (README) get
    # past them: no collective all-reduce of the data's end, and a model
    # built inside the scope before fit.
    tf_trainer._collective_all_reduce_multi_worker = lambda strategy: False
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rng = np.random.RandomState(0)
    x = rng.rand(32, 4).astype("float32"); y = rng.randn(32, 1).astype("float32")
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu", name="h0"),
                                  keras.layers.Dense(6, activation="tanh", name="h1"),
                                  keras.layers.Dense(1, name="out")])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        model._symbolic_build(data_batch=(x[:8], y[:8]))
    model._maybe_symbolic_build = lambda *a, **k: None
    monitor = GradientMonitor(log_dir=sys.argv[1], update_freq=2, dead_warning_threshold=None)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    out = [[r["step"], r["global_norm"],
            {n: [l["dead_units"], l["saturation"], l["inactive_fraction"], l["activation_mean"], l["gradient_norm"]]
             for n, l in r["layers"].items()},
            {p: v["histogram"]["counts"].tolist() for p, v in r["variables"].items()}]
           for r in monitor.history]
    print("RESULT" + json.dumps(out))
    """
)


def test_multi_worker_only_the_chief_writes_and_histories_are_equal(tmp_path):
    # Two worker processes on 127.0.0.1 (TF_CONFIG), bounded in time.
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = []
    for i in range(2):
        env = dict(
            os.environ,
            PYTHONPATH=root,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, str(tmp_path)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )
    histories = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=240)
            lines = [l for l in out.splitlines() if l.startswith("RESULT")]
            assert p.returncode == 0 and lines, err[-3000:]
            histories.append(json.loads(lines[-1][len("RESULT"):]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    chief, other = histories
    assert [r[0] for r in chief] == [2, 4]
    assert chief == other
    files = [f for f in os.listdir(tmp_path / "train") if f.endswith(".gradient_monitor")]
    assert len(files) == 1 and f".{procs[0].pid}." in files[0]
