"""Benchmark: fit time with GradientMonitor divided by fit time without.

Part 1, what users pay (`--whole-fit`, the default runs both parts): the
whole wall time of `fit`, setup and Keras's own trace included, with the
callback over without, medians of interleaved repetitions:

- a user's first fit: a fresh model (built and compiled in the timing)
  fit for 5 epochs of 40 steps;
- a second 1-epoch fit of the same model with the same callback, over a
  second 1-epoch fit without one;

for an 8x256 ReLU MLP (batch 128) and a small CNN (two Conv2D+ReLU layers
and a Dense layer; 32x32x3 inputs, batch 32), beside Keras's
`TensorBoard(histogram_freq=1)`.

Before it, a noise-free figure: the graph ops a 1-step fit of a fresh
model creates, with and without the monitor (most of the first step's
extra time is tracing and optimizing these ops).

Part 1 also times a monitor whose training step is left untouched (`StepFree`:
no site or gradient figures, no weight copy): what the fixed costs alone (state,
site discovery, the record program, the records) add to a fit.

Part 2, steady state (`--steady`): an 8-layer 256-wide ReLU MLP, batch 128, 50 steps an epoch, on this CPU.
Every configuration is measured side by side in one run. During each fit,
after every batch, a batch-end hook runs one step of a second, identical
model that has no callback (its own compiled train function) and times it:
that reference step shows how fast the shared machine is at that moment.
The fit's own time leaves the reference steps out. Three figures:

- epoch ratio (the headline): per epoch, the fit's time (its steps, every
  callback hook, the epoch-end record and any batch of records the host
  handles in that epoch) over the epoch's reference steps; median over the
  epochs with the callback over the same without it. This is the issue's
  "fit time with the monitor / fit time without", with the machine's drift
  cancelled.
- step ratio: the same for single steps (from the end of the reference step
  to the next batch end, so it holds the callback's batch hooks but not its
  epoch-end work), median over every step. The median cannot see work done
  every few dozen steps (a batch of records): the epoch ratio can.
- fit time ratio: plain median epoch time with over without, per
  repetition (median, min and max over the repetitions), including
  everything else a shared machine does in those seconds.

None of them sees work a callback hands to another thread (that runs
during the reference step): time such a callback by plain fits.

Compared with Keras's TensorBoard callback (histogram_freq=1) and with a
control, a callback that does nothing: what it measures is the method's own
error.

    python benchmarks/monitor.py          # both parts
    python benchmarks/monitor.py --whole-fit --repeats 3
    python benchmarks/monitor.py --steady --quick  # 2 repetitions, 3 epochs
    python benchmarks/monitor.py --steady --only update_freq=1
"""

import argparse
import os
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message="GradientMonitor: ")  # findings on random data

import numpy as np
import keras
import tensorflow as tf

from keras_activations import GradientMonitor


def build():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((256,))]
        + [keras.layers.Dense(256, activation="relu") for _ in range(8)]
        + [keras.layers.Dense(10)]
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def build_cnn():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


class StepFree(GradientMonitor):
    """The cost floor: a monitor whose state adds (almost) nothing to the
    training step (no site figures, no gradient figures, no weight copy;
    the step count stays), so the fit pays only the monitor's fixed costs:
    its state, the site discovery, the record program and the records.
    Private names of this package, here only."""

    def _make_state(self, iterator):
        from keras_activations.monitor import state

        class Free(state.State):
            def on_site(self, *args):
                pass

            def on_gradients(self, grads_and_vars):
                return []

            def begin_step(self, data):
                watched, self.watched = self.watched, []
                try:
                    super().begin_step(data)
                finally:
                    self.watched = watched

        original = state.State
        state.State = Free
        try:
            super()._make_state(iterator)
        finally:
            state.State = original


def whole_fit(repeats):
    """Part 1: whole-fit wall time ratios, printed as a table."""
    rng = np.random.RandomState(0)
    cases = {
        "8x256 ReLU MLP": (build, rng.rand(128 * 40, 256).astype("float32"), 128),
        "small CNN": (build_cnn, rng.rand(32 * 40, 32, 32, 3).astype("float32"), 32),
    }
    tmp = tempfile.mkdtemp(prefix="monitor_whole_fit_")
    configs = {
        "none": None,
        'update_freq="epoch"': lambda d: GradientMonitor(log_dir=d, update_freq="epoch"),
        "update_freq=1": lambda d: GradientMonitor(log_dir=d, update_freq=1),
        'update_freq="epoch", training step untouched (the floor)': lambda d: StepFree(log_dir=d),
        "Keras TensorBoard(histogram_freq=1)": lambda d: keras.callbacks.TensorBoard(
            d, histogram_freq=1
        ),
    }
    rows = []
    for case, (make_model, x, batch) in cases.items():
        y = rng.randint(0, 10, len(x))
        first = {name: [] for name in configs}
        second = {name: [] for name in configs}
        for rep in range(repeats):
            for name, make in configs.items():
                log_dir = os.path.join(tmp, f"{case}-{name}-{rep}")
                t0 = time.perf_counter()
                model = make_model()
                callbacks = [make(log_dir)] if make else []
                model.fit(x, y, batch_size=batch, epochs=5, verbose=0, callbacks=callbacks)
                t1 = time.perf_counter()
                model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)
                t2 = time.perf_counter()
                first[name].append(t1 - t0)
                second[name].append(t2 - t1)
        base_first, base_second = np.median(first["none"]), np.median(second["none"])
        for name in configs:
            if name == "none":
                continue
            rows.append(
                (
                    case,
                    name,
                    np.median(first[name]) / base_first,
                    np.median(second[name]) / base_second,
                )
            )
        print(
            f"{case}: no-callback first fit {base_first:.2f} s, second fit "
            f"{base_second:.2f} s (medians of {repeats})"
        )
    print()
    print("| model | callback | first fit (5 epochs, fresh model) | second 1-epoch fit |")
    print("|---|---|---|---|")
    for case, name, a, b in rows:
        print(f"| {case} | {name} | {a:.2f}x | {b:.2f}x |")
    print()


def traced_ops():
    """Graph ops created by a 1-step fit of a fresh model (the train step's
    trace, its conditionals' branches, the monitor's record program and its
    site discovery): a figure free of timing noise, printed as a table."""
    from tensorflow.python.framework import func_graph  # a private name, here only

    created = [0]
    original = func_graph.FuncGraph._create_op_internal

    def counting(self, *args, **kwargs):
        created[0] += 1
        return original(self, *args, **kwargs)

    rng = np.random.RandomState(0)
    cases = {
        "8x256 ReLU MLP": (build, rng.rand(128, 256).astype("float32"), 128),
        "small CNN": (build_cnn, rng.rand(32, 32, 32, 3).astype("float32"), 32),
    }
    tmp = tempfile.mkdtemp(prefix="monitor_ops_")
    func_graph.FuncGraph._create_op_internal = counting
    try:
        print("| model | Keras alone | with GradientMonitor | added |")
        print("|---|---|---|---|")
        for case, (make_model, x, batch) in cases.items():
            y = rng.randint(0, 10, len(x))
            counts = []
            for callbacks in ([], [GradientMonitor(log_dir=os.path.join(tmp, case))]):
                model = make_model()
                created[0] = 0
                model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)
                counts.append(created[0])
            print(f"| {case} | {counts[0]} | {counts[1]} | {counts[1] - counts[0]} |")
        print()
    finally:
        func_graph.FuncGraph._create_op_internal = original


def op_cost(ops=500, repeats=3):
    """What one graph op costs a fit's first step here: the Python trace of a
    function of `ops` reductions, and its first call (TensorFlow's graph
    optimization and instantiation), per op, medians of `repeats`."""
    x = tf.constant(np.random.RandomState(0).rand(128, 256).astype("float32"))
    trace, first = [], []
    for _ in range(repeats):
        fn = tf.function(lambda t: [tf.reduce_sum(t, axis=[0]) for _ in range(ops)])
        t0 = time.perf_counter()
        concrete = fn.get_concrete_function(x)
        t1 = time.perf_counter()
        concrete(x)
        t2 = time.perf_counter()
        n = len(concrete.graph.get_operations())
        trace.append((t1 - t0) / n)
        first.append((t2 - t1) / n)
    print(
        f"One traced op: {np.median(trace) * 1e3:.2f} ms of Python trace and "
        f"{np.median(first) * 1e3:.2f} ms of first call (graph optimization), "
        f"medians of {repeats} functions of {n} ops"
    )
    print()


class Nothing(keras.callbacks.Callback):
    """The control: what the method measures for a callback with no work."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repetitions")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--whole-fit", action="store_true", help="only part 1")
    parser.add_argument("--steady", action="store_true", help="only part 2")
    parser.add_argument(
        "--only", default="", help="measure only the callbacks whose name has this"
    )
    args = parser.parse_args()
    if not args.steady:
        traced_ops()
        op_cost()
        whole_fit(args.repeats or 3)
    if args.whole_fit:
        return
    repeats = 2 if args.quick else (args.repeats or 5)
    rng = np.random.RandomState(0)
    x = rng.rand(128 * 50, 256).astype("float32")
    y = rng.randint(0, 10, 128 * 50)
    tmp = tempfile.mkdtemp(prefix="monitor_bench_")
    configs = {
        'GradientMonitor(update_freq="epoch")': lambda: GradientMonitor(
            log_dir=os.path.join(tmp, "epoch"), update_freq="epoch"
        ),
        "GradientMonitor(update_freq=1)": lambda: GradientMonitor(
            log_dir=os.path.join(tmp, "step"), update_freq=1
        ),
        'GradientMonitor(update_freq="epoch", log_dir=None)': lambda: GradientMonitor(
            update_freq="epoch"
        ),
        "keras TensorBoard(histogram_freq=1)": lambda: keras.callbacks.TensorBoard(
            os.path.join(tmp, "tb"), histogram_freq=1
        ),
        "control: a callback that does nothing": Nothing,
    }

    configs = {k: v for k, v in configs.items() if args.only in k}
    epochs = 3 if args.quick else 5

    reference_data = (
        tf.data.Dataset.from_tensor_slices((x, y)).batch(128).repeat().prefetch(2)
    )

    def timed_fit(make=None):
        """(median epoch time, [step time / reference step time],
        [epoch time / its reference steps' time]) of one fresh fit."""
        reference = build()
        reference.make_train_function()
        batches = iter(reference_data)
        for _ in range(3):  # trace and warm up
            reference.train_function(batches)
        model = build()
        callbacks = [make()] if make else []
        epoch_times, step_ratios, epoch_ratios = [], [], []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
                self.fit_time = 0.0  # the epoch's time, reference steps left out
                self.reference_time = 0.0
                self.last = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                step = time.perf_counter() - self.last
                self.fit_time += step
                t0 = time.perf_counter()
                reference.train_function(batches)
                t1 = time.perf_counter()
                self.reference_time += t1 - t0
                if self.epoch > 0:  # epoch 0 traces
                    step_ratios.append(step / (t1 - t0))
                self.last = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                if epoch > 0:
                    epoch_time = self.fit_time + time.perf_counter() - self.last
                    epoch_times.append(epoch_time)
                    epoch_ratios.append(epoch_time / self.reference_time)

        model.fit(
            x,
            y,
            batch_size=128,
            epochs=epochs,
            verbose=0,
            callbacks=callbacks + [Timer()],
        )
        return float(np.median(epoch_times)), step_ratios, epoch_ratios

    ratios = {name: [] for name in configs}
    steps = {name: ([], []) for name in configs}
    epochs_ = {name: ([], []) for name in configs}
    base_times = []
    for _ in range(repeats):
        for name, make in configs.items():
            base, base_steps, base_epochs = timed_fit()
            base_times.append(base)
            with_callback, callback_steps, callback_epochs = timed_fit(make)
            ratios[name].append(with_callback / base)
            steps[name][0].extend(base_steps)
            steps[name][1].extend(callback_steps)
            epochs_[name][0].extend(base_epochs)
            epochs_[name][1].extend(callback_epochs)
    print(
        f"8x256 ReLU MLP, batch 128, 50 steps/epoch; no-callback epoch "
        f"{np.median(base_times) * 1e3:.0f} ms (median of {len(base_times)}); "
        f"{repeats} repetitions of {epochs - 1} timed epochs"
    )
    print()
    print(
        "| callback | epoch ratio | step ratio | fit time ratio (median) "
        "| min | max |"
    )
    print("|---|---|---|---|---|---|")
    for name, values in ratios.items():
        base_steps, callback_steps = steps[name]
        step_ratio = np.median(callback_steps) / np.median(base_steps)
        base_epochs, callback_epochs = epochs_[name]
        epoch_ratio = np.median(callback_epochs) / np.median(base_epochs)
        print(
            f"| {name} | {epoch_ratio:.3f}x | {step_ratio:.3f}x "
            f"| {np.median(values):.3f}x | {min(values):.3f}x | {max(values):.3f}x |"
        )


if __name__ == "__main__":
    main()
