"""Benchmark: fit time with GradientMonitor divided by fit time without.

An 8-layer 256-wide ReLU MLP, batch 128, 50 steps an epoch, on this CPU.
Every configuration is measured side by side in one run, interleaved: each
repetition fits a fresh model without any callback and then with the
callback, 5 epochs each (the first traces and is not timed), and takes the
ratio of the median epoch times. The table gives the median, min and max of
that ratio over the repetitions. Compared with Keras's TensorBoard callback
(histogram_freq=1).

    python benchmarks/monitor.py          # 5 repetitions
    python benchmarks/monitor.py --quick  # 2 repetitions, 3 epochs
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repetitions")
    parser.add_argument("--repeats", type=int, default=5)
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
    }

    epochs = 3 if args.quick else 5

    def epoch_time(make=None):
        model = build()
        callbacks = [make()] if make else []
        # epoch 1 traces; the others are timed
        times = []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.t)

        model.fit(
            x,
            y,
            batch_size=128,
            epochs=epochs,
            verbose=0,
            callbacks=callbacks + [Timer()],
        )
        return float(np.median(times[1:]))

    ratios = {name: [] for name in configs}
    base_times = []
    for _ in range(repeats):
        for name, make in configs.items():
            base = epoch_time()
            base_times.append(base)
            ratios[name].append(epoch_time(make) / base)
    print(
        f"8x256 ReLU MLP, batch 128, 50 steps/epoch; no-callback epoch "
        f"{np.median(base_times) * 1e3:.0f} ms (median of {len(base_times)}); "
        f"{repeats} repetitions of {epochs - 1} timed epochs"
    )
    print()
    print("| callback | fit time ratio (median) | min | max |")
    print("|---|---|---|---|")
    for name, values in ratios.items():
        print(f"| {name} | {np.median(values):.3f}x | {min(values):.3f}x | {max(values):.3f}x |")


if __name__ == "__main__":
    main()
