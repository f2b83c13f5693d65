"""Benchmark: the `depth_profile` picture, this tree's against an earlier
revision's, side by side on one record.

The record is the last of a 1-epoch fit of `compare`'s 10-layer MLP (a
`Dense` then an `Activation` layer each) under `GradientMonitor`. Each
repetition draws and PNG-encodes the picture once with each implementation,
interleaved; the table gives the medians in milliseconds, the picture's size
and its PNG's bytes; a second table what a fit pays for its pictures (the
baseline drew one with every record, this tree at most 10 a fit).

    python benchmarks/depth_profile.py                  # against ccb1143
    python benchmarks/depth_profile.py --baseline main --repeats 500
"""

import argparse
import os
import subprocess
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

BASELINE = "ccb1143"  # the last revision with the bar picture without text


def baseline_image(revision):
    """`record -> palette indices` of `revision`'s picture, and its palette."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(
        ["git", "show", f"{revision}:keras_activations/monitor/plots.py"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout
    old = types.ModuleType("old_plots")
    exec(compile(source, "old_plots.py", "exec"), old.__dict__)

    def image(record):  # `events.depth_picture` of that revision
        items = sorted(record["layers"].values(), key=lambda e: e["depth"])

        def row(key):
            return [[np.nan if e[key] is None else e[key] for e in items]]

        return old.depth_profiles(row("gradient_norm"), row("dead_fraction"), row("activation_mean"))[0]

    return image, old.PALETTE


def a_record():
    """The last record and the depth rows of a small monitored fit."""
    import keras

    from keras_activations import GradientMonitor
    from keras_activations.compare import models

    model = models.build_model(models.resolve("relu"), (8, 8, 1), 10, depth=10, width=64)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.RandomState(0)
    x, y = rng.rand(256, 8, 8, 1).astype("float32"), rng.randint(0, 10, 256)
    hidden = [l.name for l in model.layers if l.name.startswith(("dense_", "act_"))]
    monitor = GradientMonitor(layers=hidden, dead_warning_threshold=None)
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[monitor])
    keras.backend.clear_session()
    return monitor.history[-1], monitor._profile_rows()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    from keras_activations.monitor import events, plots

    record, rows = a_record()
    old_image, old_palette = baseline_image(args.baseline)
    cases = {
        f"{args.baseline} (bars only)": lambda: events.png(old_image(record), old_palette),
        "this tree (rows, text)": lambda: events.png(plots.depth_profile(record, rows), plots.PALETTE),
    }
    times = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, draw in cases.items():
            t0 = time.perf_counter()
            draw()
            times[name].append(time.perf_counter() - t0)
    shapes = {
        f"{args.baseline} (bars only)": old_image(record).shape,
        "this tree (rows, text)": plots.depth_profile(record, rows).shape,
    }
    print(f"depth_profile of one record ({len(record['layers'])} layers, {len(rows)} rows), "
          f"draw + PNG, median of {args.repeats} interleaved repetitions")
    print("| picture | ms | height x width | PNG bytes |")
    print("|---|---|---|---|")
    for name, draw in cases.items():
        h, w = shapes[name]
        print(f"| {name} | {1e3 * np.median(times[name]):.3f} | {h} x {w} | {len(draw())} |")
    # Per fit: the baseline drew a picture with every record; this tree with
    # at most MAX_PICTURES records of a fit (write_images=True).
    from keras_activations.monitor.callback import MAX_PICTURES

    print()
    print("| fit (records) | pictures then | ms then | pictures now | ms now |")
    print("|---|---|---|---|---|")
    old_ms, new_ms = (1e3 * np.median(times[name]) for name in cases)
    for label, records in (('12 epochs, update_freq="epoch" (make demo)', 12),
                           ("12 epochs of 45 steps, update_freq=1", 540)):
        every = -(-records // MAX_PICTURES)
        now = records // every + (records % every != 0)
        print(f"| {label} ({records}) | {records} | {records * old_ms:.1f} | {now} | {now * new_ms:.1f} |")


if __name__ == "__main__":
    main()
