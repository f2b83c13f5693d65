"""TensorBoard's HParams dashboard for a comparison (`tensorboard.plugins.hparams`).

Each activation's run directory gets its hyperparameters (activation, init, optimizer, learning
rate, status) and final metrics as `hparams/<metric>` scalars; the TensorBoard root gets the
experiment's configuration, so that the HParams tab shows the report's table, sortable and
filterable.
"""

import glob
import math
import os

HPARAMS = ("activation", "init", "optimizer", "learning_rate", "status")
# Final figures of a run shown as HParams metrics (besides every compiled metric).
SUMMARY = ("grad_ratio", "dead_fraction", "activation_mean", "gradient_cosine",
           "seconds_per_epoch")
TAG = "hparams/"


def run_values(row):
    """(hparams, metrics) of a report row: plain values, NaN and missing ones left out."""
    hparams = {
        "activation": row["activation"],
        "init": str(row.get("init")),
        "optimizer": str(row.get("optimizer")),
        "learning_rate": float(row["learning_rate"]) if row.get("learning_rate") else 0.0,
        "status": row.get("status", "ok"),
    }
    metrics = {}
    keys = [f"{p}_{m}" for m in row.get("metrics", []) for p in ("train", "val")] + list(SUMMARY)
    for key in keys:
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            metrics[key] = float(value)
    return hparams, metrics


def write_run(log_dir, row, step):
    """Writes one run's hparams and final metrics into `log_dir`."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    hparams, metrics = run_values(row)
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        hp.hparams(hparams, trial_id=row["activation"])
        for key, value in metrics.items():
            tf.summary.scalar(TAG + key, value, step=step)
    writer.close()


def write_config(tb_root, rows):
    """Writes the experiment configuration (hparams and metrics of `rows`) at `tb_root`,
    replacing an earlier one."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    for old in glob.glob(os.path.join(tb_root, "events.out.tfevents.*")):
        os.remove(old)
    values = [run_values(r) for r in rows]
    metric_keys = []
    for _, metrics in values:
        metric_keys += [k for k in metrics if k not in metric_keys]
    hparams = [
        hp.HParam("activation", hp.Discrete(sorted({h["activation"] for h, _ in values}))),
        hp.HParam("init", hp.Discrete(sorted({h["init"] for h, _ in values}))),
        hp.HParam("optimizer", hp.Discrete(sorted({h["optimizer"] for h, _ in values}))),
        hp.HParam("learning_rate", hp.RealInterval(0.0, max([h["learning_rate"] for h, _ in values] + [1.0]))),
        hp.HParam("status", hp.Discrete(["ok", "failed"])),
    ]
    metrics = [hp.Metric(TAG + k, display_name=k.replace("_", " ")) for k in metric_keys]
    writer = tf.summary.create_file_writer(tb_root)
    with writer.as_default():
        hp.hparams_config(hparams=hparams, metrics=metrics)
    writer.close()
