"""The whole `compare` run: train each activation, then write report, figures, model."""

import dataclasses
import os
import platform
import shutil
import sys

import keras

from keras_activations.compare import export as export_lib
from keras_activations.compare import plots
from keras_activations.compare import report as report_lib
from keras_activations.compare import run as run_lib

# What a comparison writes under --out; --overwrite removes exactly these.
OUTPUTS = (
    "tensorboard",
    "report.json",
    "report.md",
    "loss_curves.png",
    "gradient_norm_by_depth.png",
    "dead_fraction_by_depth.png",
    "best_model.keras",
    "best_model_savedmodel",
)


class OutputExistsError(ValueError):
    """`--out` exists and is not empty, and `--overwrite` was not given."""


def check_out_dir(out_dir, overwrite=False):
    """Raises `OutputExistsError` if `out_dir` cannot take a comparison's outputs.

    Args:
        out_dir: Output directory.
        overwrite: Whether replacing a previous comparison is allowed.

    Raises:
        OutputExistsError: `out_dir` is a file, or it is not empty and
            `overwrite` is False.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputExistsError(f"--out {out_dir!r} is a file, not a directory.")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise OutputExistsError(
            f"--out {out_dir!r} exists and is not empty; pass --overwrite "
            f"to replace its comparison outputs, or choose another --out."
        )


def prepare_out_dir(out_dir, overwrite=False):
    """Creates `out_dir`, refusing a non-empty one unless `overwrite`.

    With `overwrite`, only what a comparison writes (`OUTPUTS`) is removed;
    other files in `out_dir` are left alone.

    Args:
        out_dir: Output directory.
        overwrite: Replace a previous comparison's outputs. Defaults to False.

    Raises:
        OutputExistsError: See `check_out_dir`.
    """
    check_out_dir(out_dir, overwrite)
    if os.path.isdir(out_dir):
        for name in OUTPUTS:
            path = os.path.join(out_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    os.makedirs(out_dir, exist_ok=True)


def run_comparison(
    choices,
    data,
    config,
    out_dir,
    verbose=1,
    stream=None,
    monitor_factory=run_lib.default_monitor,
    export=True,
):
    """Trains one model per activation and writes everything under `out_dir`.

    `out_dir` must already be prepared (see `prepare_out_dir`).

    Args:
        choices: `models.ActivationChoice`s, in report order.
        data: A `data.Data`.
        config: A `run.TrainConfig`.
        out_dir: Output directory.
        verbose: 1 for Keras's progress bar, 0 for one line per run.
        stream: Where progress and messages go. Defaults to stdout.
        monitor_factory: See `run.train_one`.
        export: Save the best model as .keras and SavedModel. Defaults to True.

    Returns:
        The report dict (as written to `report.json`).
    """
    stream = stream or sys.stdout
    tb_root = os.path.join(out_dir, "tensorboard")
    rows = []
    best_model = None
    best_key = None
    for i, choice in enumerate(choices, 1):
        stream.write(
            f"[{i}/{len(choices)}] {choice.label}: init {choice.initializer} "
            f"({choice.init_reason})\n"
        )
        stream.flush()
        result = run_lib.train_one(
            choice,
            data,
            config,
            log_dir=os.path.join(tb_root, choice.slug),
            monitor_factory=monitor_factory,
            verbose=verbose,
            progress_stream=stream if not verbose else None,
        )
        row = report_lib.result_row(result, config.target_accuracy)
        rows.append(row)
        if report_lib.best_row(rows) is row:
            best_model, best_key = result.model, choice.label

    files = {"tensorboard": tb_root}
    files.update(plots.write_all(rows, out_dir))
    report = {
        "config": dataclasses.asdict(config),
        "data": {
            "name": data.name,
            "source": data.source,
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
            "num_train": data.num_train,
            "num_validation": data.num_validation,
            "batch_size": data.batch_size,
        },
        "versions": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "tensorflow": _tf_version(),
        },
        "runs": rows,
        "best": best_key,
        "files": files,
    }
    if export and best_model is not None:
        exported = export_lib.export_model(best_model, out_dir)
        files["best_model_keras"] = exported["keras"]
        files["best_model_savedmodel"] = exported["savedmodel"]
        report["load"] = exported["load"]
    files["report_json"] = os.path.join(out_dir, "report.json")
    files["report_md"] = os.path.join(out_dir, "report.md")
    report_lib.write_json(files["report_json"], report)
    with open(files["report_md"], "w") as f:
        f.write(report_lib.render_markdown(report))
    return report


def _tf_version():
    import tensorflow as tf

    return tf.__version__
