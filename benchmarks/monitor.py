"""Benchmark: fit time with GradientMonitor divided by fit time without.

An 8-layer 256-wide ReLU MLP, batch 128, 50 steps an epoch, on this CPU.
Every configuration is measured side by side in one run. Two figures:

- fit time ratio: each repetition fits a fresh model without any callback
  and then with the callback, 5 epochs each (the first traces and is not
  timed), and takes the ratio of the median epoch times; the table gives
  the median, min and max over the repetitions. It includes each epoch's
  record, and everything else a shared machine does in those seconds.
- step ratio: the cost of one training step, with the noise of a shared
  machine cancelled. During each fit, after every batch, a batch-end hook
  runs one step of a second, identical model that has no callback (its
  own compiled train function), and times both: the fit's step (from the
  end of the reference step to the next batch end, so it includes the
  callback's batch hooks but not its epoch-end record) and the reference
  step. The figure is median(step / reference step) with the callback over
  the same without it, over every step of every repetition. It cannot see
  work a callback hands to another thread (that runs during the reference
  step): time such a callback by plain fits.

Compared with Keras's TensorBoard callback (histogram_freq=1) and with a
control, a callback that does nothing: what it measures is the method's own
error.

    python benchmarks/monitor.py          # 5 repetitions
    python benchmarks/monitor.py --quick  # 2 repetitions, 3 epochs
    python benchmarks/monitor.py --only update_freq=1
"""

import argparse
import os
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message="GradientMonitor: .* dead")

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


class Nothing(keras.callbacks.Callback):
    """The control: what the method measures for a callback with no work."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repetitions")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only", default="", help="measure only the callbacks whose name has this"
    )
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
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
        """(median epoch time, [step time / reference step time]) of one
        fresh fit."""
        reference = build()
        reference.make_train_function()
        batches = iter(reference_data)
        for _ in range(3):  # trace and warm up
            reference.train_function(batches)
        model = build()
        callbacks = [make()] if make else []
        epoch_times, step_ratios = [], []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
                self.fit_time = 0.0  # the epoch's time, reference steps left out
                self.last = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                step = time.perf_counter() - self.last
                self.fit_time += step
                t0 = time.perf_counter()
                reference.train_function(batches)
                t1 = time.perf_counter()
                if self.epoch > 0:  # epoch 0 traces
                    step_ratios.append(step / (t1 - t0))
                self.last = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                if epoch > 0:
                    epoch_times.append(self.fit_time + time.perf_counter() - self.last)

        model.fit(
            x,
            y,
            batch_size=128,
            epochs=epochs,
            verbose=0,
            callbacks=callbacks + [Timer()],
        )
        return float(np.median(epoch_times)), step_ratios

    ratios = {name: [] for name in configs}
    steps = {name: ([], []) for name in configs}
    base_times = []
    for _ in range(repeats):
        for name, make in configs.items():
            base, base_steps = timed_fit()
            base_times.append(base)
            with_callback, callback_steps = timed_fit(make)
            ratios[name].append(with_callback / base)
            steps[name][0].extend(base_steps)
            steps[name][1].extend(callback_steps)
    print(
        f"8x256 ReLU MLP, batch 128, 50 steps/epoch; no-callback epoch "
        f"{np.median(base_times) * 1e3:.0f} ms (median of {len(base_times)}); "
        f"{repeats} repetitions of {epochs - 1} timed epochs"
    )
    print()
    print("| callback | fit time ratio (median) | min | max | step ratio |")
    print("|---|---|---|---|---|")
    for name, values in ratios.items():
        base_steps, callback_steps = steps[name]
        step_ratio = np.median(callback_steps) / np.median(base_steps)
        print(
            f"| {name} | {np.median(values):.3f}x | {min(values):.3f}x "
            f"| {max(values):.3f}x | {step_ratio:.3f}x |"
        )


if __name__ == "__main__":
    main()
