"""The whole `compare` run: train each activation, then write report, figures, model."""

import contextlib
import json
import os
import platform
import shutil
import signal
import sys

import keras

from keras_activations.compare import export as export_lib
from keras_activations.compare import hparams
from keras_activations.compare import plots
from keras_activations.compare import report as report_lib
from keras_activations.compare import run as run_lib
from keras_activations.compare.errors import CompareError

# What a comparison writes under --out; --overwrite removes exactly these.
OUTPUTS = (
    "tensorboard",
    "runs",
    "models",
    "report.json",
    "report.md",
    "loss_curves.png",
    "gradient_norm_by_depth.png",
    "dead_fraction_by_depth.png",
    "best_model.keras",
    "best_model_savedmodel",
)


class OutputExistsError(CompareError):
    """`--out` cannot take a comparison: a file, under a file, or not empty."""


def check_out_dir(out_dir, overwrite=False, resume=False):
    """Raises `OutputExistsError` if `out_dir` cannot take a comparison's outputs.

    Args:
        out_dir: Output directory.
        overwrite: Whether replacing a previous comparison is allowed.
        resume: Whether continuing a previous comparison there is wanted.

    Raises:
        OutputExistsError: `out_dir` is a file or lies under one, or it is not
            empty and neither `overwrite` nor `resume` is given.
    """
    if overwrite and resume:
        raise OutputExistsError("--overwrite and --resume exclude each other; pick one.")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputExistsError(f"--out {out_dir!r} is a file, not a directory.")
    parent = os.path.dirname(os.path.abspath(out_dir))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise OutputExistsError(
            f"--out {out_dir!r} lies under {parent!r}, which is a file, not a directory."
        )
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not (overwrite or resume):
        raise OutputExistsError(
            f"--out {out_dir!r} exists and is not empty; pass --overwrite "
            f"to replace its comparison outputs, --resume to continue it, or "
            f"choose another --out."
        )


def prepare_out_dir(out_dir, overwrite=False, resume=False):
    """Creates `out_dir`, refusing a non-empty one unless `overwrite` or `resume`.

    With `overwrite`, only what a comparison writes (`OUTPUTS`) is removed;
    other files in `out_dir` are left alone. With `resume`, nothing is.

    Raises:
        OutputExistsError: See `check_out_dir`; also when the directory cannot
            be created.
    """
    check_out_dir(out_dir, overwrite, resume)
    if os.path.isdir(out_dir) and overwrite:
        for name in OUTPUTS:
            path = os.path.join(out_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    try:
        os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    except OSError as e:
        raise OutputExistsError(f"--out {out_dir!r} cannot be created ({e.strerror}).") from None


def settings(config, data, model_info, fit_kwargs=None):
    """What a run's results depend on besides the activation (compared by `--resume`)."""
    return {
        "config": config.to_dict(),
        "data": {k: v for k, v in data_summary(data).items() if k != "source"},
        "model": model_info.get("description"),
        "fit_kwargs": sorted(fit_kwargs or {}),
    }


def data_summary(data):
    """The report's `data` entry."""
    return {
        "name": data.name,
        "source": data.source,
        "task": data.task,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "num_train": data.num_train,
        "num_validation": data.num_validation,
        "batch_size": data.batch_size,
    }


def finished_runs(out_dir, choices, expected):
    """Rows of `choices` finished in an earlier run in `out_dir` (label -> row).

    Raises:
        OutputExistsError: A finished run had other settings than `expected`.
    """
    done = {}
    for choice in choices:
        path = os.path.join(out_dir, "runs", f"{choice.slug}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            saved = json.load(f)
        if saved.get("settings") != expected:
            diff = _first_difference(saved.get("settings"), expected)
            raise OutputExistsError(
                f"--resume: {out_dir!r} was run with other settings ({diff}); pass the "
                f"same options, or --overwrite to start again."
            )
        done[choice.label] = saved["row"]
    return done


def _first_difference(old, new, where=""):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(new) + [k for k in old if k not in new]:
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{where}{key}.")
    return f"{where.rstrip('.')}: {old!r} there, {new!r} now"


def run_comparison(
    choices,
    data,
    config,
    out_dir,
    verbose=1,
    stream=None,
    monitor_factory=run_lib.default_monitor,
    export=True,
    source=None,
    best_by="val_loss",
    resume=False,
    fit_kwargs=None,
    model_info=None,
    trained=None,
):
    """Trains one model per activation and writes everything under `out_dir`.

    `out_dir` must already be prepared (see `prepare_out_dir`); None writes
    nothing. Each finished activation is written at once (`runs/<name>.json`,
    its TensorBoard run with HParams, `models/<name>.keras`, and report.json
    and report.md so far, marked partial). A run that raises (or whose loss
    turns NaN) is recorded as failed and the next one starts. Ctrl-C ends the
    loop: the report and figures of the finished activations are written,
    marked partial.

    Args:
        choices: `models.ActivationChoice`s, in report order.
        data: A `data.Data`.
        config: A `run.TrainConfig`.
        out_dir: Output directory, or None.
        verbose: 1 for Keras's progress bar, 0 for one line per run.
        stream: Where progress and messages go. Defaults to stdout.
        monitor_factory: See `run.train_one`.
        export: Save the best model as .keras and SavedModel. Defaults to True.
        source: See `run.train_one`.
        best_by: The row key naming the best run, e.g. `"val_loss"`.
        resume: Skip the activations finished in `out_dir` by an earlier run
            with the same settings.
        fit_kwargs: More `model.fit` arguments.
        model_info: The report's `model` entry (`kind`, `description`).
        trained: A dict that receives label -> `run.RunResult` of each run
            trained here (with its model and full monitor history).

    Returns:
        The report dict (as written to `report.json`), with `partial` True
        when interrupted.
    """
    stream = stream or sys.stdout
    model_info = model_info or {"kind": "builtin", "description": config.model}
    expected = settings(config, data, model_info, fit_kwargs)
    done = finished_runs(out_dir, choices, expected) if (resume and out_dir) else {}
    tb_root = os.path.join(out_dir, "tensorboard") if out_dir else None
    rows = []
    trained = {} if trained is None else trained
    report = _report(config, data, model_info, choices, rows, best_by, out_dir, tb_root)
    try:
        for i, choice in enumerate(choices, 1):
            if choice.label in done:
                rows.append(done[choice.label])
                stream.write(f"[{i}/{len(choices)}] {choice.label}: finished before, kept "
                             f"(--resume)\n")
                continue
            stream.write(
                f"[{i}/{len(choices)}] {choice.label}: init "
                f"{'kept' if config.keep_init and model_info['kind'] != 'builtin' else choice.initializer}"
                f" ({choice.init_reason})\n"
            )
            stream.flush()
            log_dir = os.path.join(tb_root, choice.slug) if tb_root else None
            if log_dir and os.path.exists(log_dir):
                shutil.rmtree(log_dir)  # an interrupted run's events
            row = _train(choice, data, config, log_dir, monitor_factory, verbose, stream,
                         source, fit_kwargs, trained, out_dir, export)
            rows.append(row)
            if row["status"] != "ok":
                stream.write(f"  {choice.label} failed: {row['error']}; going on.\n")
            if out_dir:
                _write_run(out_dir, choice, row, expected, config)
                _write_report(report, rows, choices, best_by, partial=True)
    except KeyboardInterrupt:
        report["partial"] = True
        if out_dir:
            with _no_second_interrupt():
                _finish(report, rows, choices, best_by, trained, export=False, partial=True)
        return report
    if out_dir:
        _finish(report, rows, choices, best_by, trained, export=export, partial=False)
    else:
        _set_best(report, rows, best_by)
    return report


@contextlib.contextmanager
def _no_second_interrupt():
    """Ignores Ctrl-C while the partial report is written (main thread only)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _train(choice, data, config, log_dir, monitor_factory, verbose, stream, source,
           fit_kwargs, trained, out_dir, export):
    from keras_activations.compare import sources

    try:
        result = run_lib.train_one(
            choice, data, config, log_dir=log_dir, monitor_factory=monitor_factory,
            verbose=verbose, progress_stream=stream if not verbose else None,
            source=source, fit_kwargs=fit_kwargs,
        )
    except (CompareError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - a failed run is recorded, the next one starts
        if isinstance(e, sources.BuilderFailed):
            message = str(e)
        else:
            message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return report_lib.failed_row(choice.label, choice.initializer, message, log_dir)
    row = report_lib.result_row(result, config.target_accuracy)
    if row["status"] == "ok":
        trained[choice.label] = result
        if out_dir and export:
            os.makedirs(os.path.join(out_dir, "models"), exist_ok=True)
            path = os.path.join(out_dir, "models", f"{choice.slug}.keras")
            result.model.save(path)
            row["model"] = path
    return row


def _write_run(out_dir, choice, row, expected, config):
    if row.get("tensorboard"):
        hparams.write_run(row["tensorboard"], row, step=config.epochs)
    path = os.path.join(out_dir, "runs", f"{choice.slug}.json")
    report_lib.write_json(path + ".tmp", {"settings": expected, "row": row})
    os.replace(path + ".tmp", path)


def _report(config, data, model_info, choices, rows, best_by, out_dir, tb_root):
    files = {}
    if out_dir:
        files = {"tensorboard": tb_root,
                 "report_json": os.path.join(out_dir, "report.json"),
                 "report_md": os.path.join(out_dir, "report.md")}
    return {
        "config": config.to_dict(),
        "data": None if data is None else data_summary(data),
        "model": model_info,
        "activations": [c.label for c in choices],
        "versions": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "tensorflow": _tf_version(),
        },
        "runs": rows,
        "best_by": best_by,
        "best": None,
        "partial": False,
        "diagnosis": "Each run's `diagnosis` lists GradientMonitor's findings (kind, layer, first_step, "
                     "last_step, evidence, message); empty: none.",
        "files": files,
    }


def _set_best(report, rows, best_by):
    best = report_lib.best_row(rows, best_by)
    report["best"] = best["activation"] if best else None
    return best


def _write_report(report, rows, choices, best_by, partial):
    report["partial"] = partial
    _set_best(report, rows, best_by)
    files = report["files"]
    report_lib.write_json(files["report_json"] + ".tmp", report)
    os.replace(files["report_json"] + ".tmp", files["report_json"])
    with open(files["report_md"], "w") as f:
        f.write(report_lib.render_markdown(report))


def _finish(report, rows, choices, best_by, trained, export, partial):
    """Figures, HParams configuration, the best model and the final report."""
    out_dir = os.path.dirname(report["files"]["report_json"])
    files = report["files"]
    finished = [r for r in rows if r.get("status", "ok") == "ok"]
    files.update(plots.write_all(finished, out_dir))
    if rows and files.get("tensorboard") and os.path.isdir(files["tensorboard"]):
        hparams.write_config(files["tensorboard"], rows)
    best = _set_best(report, rows, best_by)
    for key in ("best_model_keras", "best_model_savedmodel"):
        files.pop(key, None)
    report.pop("load", None)
    if export and best is not None:
        model = getattr(trained.get(best["activation"]), "model", None)
        if model is None and best.get("model") and os.path.exists(best["model"]):
            model = keras.models.load_model(best["model"])
        if model is not None:
            exported = export_lib.export_model(model, out_dir)
            files["best_model_keras"] = exported["keras"]
            files["best_model_savedmodel"] = exported["savedmodel"]
            report["load"] = exported["load"]
    # report_json/report_md last, so that the listing ends with them.
    for key in ("report_json", "report_md"):
        files[key] = files.pop(key)
    _write_report(report, rows, choices, best_by, partial)


def _tf_version():
    import tensorflow as tf

    return tf.__version__
