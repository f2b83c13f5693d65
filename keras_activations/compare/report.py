"""`report.json` and `report.md`: what `compare` measured, per activation."""

import json
import math

from keras_activations.compare import run as run_lib

# Monitor columns after the metrics: (key in a row, column title, format).
MONITOR_COLUMNS = (
    ("grad_ratio", "grad norm first/last", "{:.3g}"),
    ("dead_fraction", "dead fraction", "{:.3f}"),
    ("activation_mean", "mean activation", "{:+.3f}"),
    ("gradient_cosine", "grad cosine", "{:.3f}"),
    ("seconds_per_epoch", "s/epoch", "{:.2f}"),
)
# Metrics where higher is better (for `best_by`); every other one (losses, errors) is lower.
_HIGHER = ("acc", "auc", "precision", "recall", "f1", "iou", "r2", "top_k")
_SHORT = {"accuracy": "acc"}


def metric_names(history):
    """Metric names of a Keras history, training ones first: `["loss", "accuracy"]`."""
    return [k for k in history if not k.startswith("val_")]


def result_row(result, target_accuracy):
    """One row of the report for a `run.RunResult` (plain, JSON-able values).

    Every compiled metric `m` gives `train_m` and `val_m` (the last epoch's),
    e.g. `train_loss`, `val_loss`, `train_accuracy`, `val_accuracy`.
    """
    hidden = result.hidden
    summary = run_lib.summarize_monitor(
        result.monitor_history, None if hidden is None else hidden.get
    )
    row = {
        "activation": result.activation,
        "status": "failed" if result.error else "ok",
        "error": result.error,
        "init": result.initializer,
        "params": result.params,
        "optimizer": result.optimizer,
        "learning_rate": result.learning_rate,
        "metrics": metric_names(result.history),
    }
    for name in row["metrics"]:
        row[f"train_{name}"] = result.final(name)
        row[f"val_{name}"] = result.final(f"val_{name}")
    row.update({
        "epochs_to_target": (result.epochs_to(target_accuracy)
                             if "val_accuracy" in result.history else None),
        "grad_ratio": summary["grad_ratio"],
        "dead_fraction": summary["dead_fraction"],
        "activation_mean": summary["activation_mean"],
        "gradient_cosine": summary["gradient_cosine"],
        "inactive_fraction": summary["inactive_fraction"],
        "saturation": summary["saturation"],
        "seconds_per_epoch": result.seconds_per_epoch(),
        "history": result.history,
        "epoch_seconds": result.epoch_seconds,
        "by_depth": summary["by_depth"],
        "sites": result.sites,
        "swaps": [{"layer": s["layer"], "kind": s["kind"], "original": s["original"],
                   "now": result.activation} for s in result.sites if s["swapped"]],
        "monitor": result.monitor_rows,
        "diagnosis": result.diagnosis,  # GradientMonitor's findings
        "tensorboard": result.log_dir,
    })
    return row


def failed_row(activation, init, error, log_dir=None):
    """The row of a run that raised before it had results."""
    return {"activation": activation, "status": "failed", "error": error, "init": init,
            "metrics": [], "history": {}, "epoch_seconds": [], "by_depth": [], "swaps": [],
            "sites": [], "monitor": [], "diagnosis": [], "tensorboard": log_dir,
            "seconds_per_epoch": float("nan")}


def higher_is_better(metric):
    """Whether a larger value of `metric` is better (`"val_accuracy"`: yes, `"val_loss"`: no)."""
    name = metric.lower()
    return any(h in name for h in _HIGHER) and "error" not in name


def best_row(rows, by="val_loss"):
    """The finished row with the best final `by` (default the lowest validation loss).

    Ties go to the first. Failed rows and rows without a finite `by` do not count; None when
    no row does.
    """
    higher = higher_is_better(by)
    best, best_value = None, None
    for row in rows:
        value = row.get(by)
        if row.get("status", "ok") != "ok" or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            continue
        if best is None or (value > best_value if higher else value < best_value):
            best, best_value = row, value
    return best


def _cell(row, key, fmt):
    value = row.get(key)
    if value is None:
        if key == "epochs_to_target":
            return "not reached"
        if key == "dead_fraction":
            return "n/a"
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return fmt.format(value)


def columns(rows, target_accuracy):
    """The table's columns for these rows: (key, title, format)."""
    names = []
    for row in rows:
        for name in row.get("metrics", []):
            if name not in names:
                names.append(name)
    if "loss" in names:
        names.remove("loss")
    names.insert(0, "loss")
    cols = [("activation", "activation", "{}"), ("init", "init", "{}")]
    for name in names:
        short = _SHORT.get(name, name)
        fmt = "{:.3f}" if higher_is_better(name) else "{:.4f}"
        cols.append((f"train_{name}", f"train {short}", fmt))
        cols.append((f"val_{name}", f"val {short}", fmt))
    if "accuracy" in names:
        cols.append(("epochs_to_target", f"epochs to {target_accuracy}", "{}"))
    cols.extend(MONITOR_COLUMNS)
    if any(row.get("status", "ok") != "ok" for row in rows):
        cols.append(("status", "status", "{}"))
    return cols


def markdown_table(rows, target_accuracy):
    """The per-activation table as Markdown (a failed run's metrics read `-`)."""
    cols = columns(rows, target_accuracy)
    lines = [
        "| " + " | ".join(title for _, title, _ in cols) + " |",
        "|" + "|".join("---" for _ in cols) + "|",
    ]
    for row in rows:
        cells = [_cell(row, key, fmt) for key, _, fmt in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def swap_table(rows):
    """What the candidates replaced in the given model, layer by layer (Markdown), or None."""
    row = next((r for r in rows if r.get("sites")), None)
    if row is None:
        return None
    lines = ["| layer | where | original | swapped |", "|---|---|---|---|"]
    for site in row["sites"]:
        how = "yes" if site["swapped"] else f"no: {site['reason']}"
        lines.append(f"| {site['layer']} | {site['kind']} | {site['original']} | {how} |")
    return "\n".join(lines)


def depth_table(rows, field, fmt="{:.3g}"):
    """A Markdown table activation x depth of one time-averaged monitor field."""
    depths = sorted(
        {e["depth"] for row in rows for e in row["by_depth"] if e.get(field) is not None}
    )
    if not depths:
        return None
    lines = [
        "| activation | " + " | ".join(f"depth {d}" for d in depths) + " |",
        "|---|" + "|".join("---" for _ in depths) + "|",
    ]
    for row in rows:
        values = {e["depth"]: e.get(field) for e in row["by_depth"]}
        if all(v is None for v in values.values()):
            continue
        cells = [
            "-" if values.get(d) is None else fmt.format(values[d]) for d in depths
        ]
        lines.append(f"| {row['activation']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path, report):
    """Writes the report dict as indented JSON."""
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=_jsonable)
        f.write("\n")


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _model_line(config, data, model):
    if model.get("kind") == "builtin":
        return (f"Model: {config['model'].upper()}, {config['depth']} hidden layers of "
                f"width {config['width']}")
    return f"Model: {model['description']}"


def diagnosis_lines(rows):
    """Markdown lines of each run's findings (`row["diagnosis"]`), or of
    none."""
    lines = []
    for row in rows:
        for f in row.get("diagnosis") or []:
            where = "the model" if f["layer"] is None else f"`{f['layer']}`"
            span = f"steps {f['first_step']}-{f['last_step']}" if f["last_step"] is not None else (
                f"from step {f['first_step']}")
            lines.append(f"- {row['activation']}: **{f['kind']}** of {where} ({span}): {f['message']}")
    return lines or ["None: every run was healthy by the monitor's thresholds."]


def render_markdown(report):
    """`report.md`'s text for a report dict (as written to report.json)."""
    config = report["config"]
    data = report["data"]
    rows = report["runs"]
    model = report.get("model", {"kind": "builtin"})
    target = config["target_accuracy"]
    optimizer = rows[0].get("optimizer") if rows else config["optimizer"]
    rate = rows[0].get("learning_rate") if rows else config["learning_rate"]
    classes = (f"{data['num_classes']} classes" if data.get("num_classes")
               else "regression")
    lines = ["# keras-activations compare", ""]
    if report.get("partial"):
        lines += [
            f"**Partial**: interrupted after {len(rows)} of "
            f"{len(report['activations'])} activations; `--resume` continues it.",
            "",
        ]
    lines += [
        f"Dataset: {data['name']}, {data['num_train']} training / "
        f"{data['num_validation']} validation examples, input "
        f"{tuple(data['input_shape'])}, {classes} ({data['source']}).",
        _model_line(config, data, model) + f"; {optimizer} "
        f"(learning rate {rate}"
        + (f", momentum {config['momentum']}" if optimizer == "sgd" and model.get("kind") == "builtin" else "")
        + f"), batch size {data['batch_size']}, {config['epochs']} epochs, "
        f"seed {config['seed']}; every activation saw the same batches in the "
        f"same order.",
        "",
        markdown_table(rows, target),
        "",
        "- *grad norm first/last*: median over training of the first hidden "
        "layer's gradient norm divided by the last one's; far below 1 means "
        "gradients vanish on their way to the input.",
        "- *dead fraction*: mean share of hidden units whose derivative was 0 "
        "for every example of an epoch (GradientMonitor's dead units; 0 for "
        "activations that cannot die).",
        "- *mean activation*: mean output of the hidden layers; closer to 0 "
        "means less bias shift (the ELU paper's claim).",
        "- *grad cosine*: mean cosine between a layer's gradient at the end "
        "of an epoch and at the end of the previous one; higher means a "
        "steadier descent direction.",
        "- *s/epoch*: median wall time of an epoch, monitor included.",
    ]
    failed = [r for r in rows if r.get("status", "ok") != "ok"]
    if failed:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {r['activation']}: {r['error']}" for r in failed]
    swaps = swap_table(rows)
    if swaps:
        lines += ["", "## Swapped activations (per layer, for every candidate)", "", swaps]
    grad = depth_table(rows, "gradient_norm")
    if grad:
        lines += ["", "## Gradient norm by depth (input to output, mean over training)", "", grad]
    dead = depth_table(rows, "dead_fraction", "{:.3f}")
    if dead:
        lines += ["", "## Dead fraction by depth", "", dead]
    act = depth_table(rows, "activation_mean", "{:+.3f}")
    if act:
        lines += ["", "## Mean activation by depth", "", act]
    lines += ["", "## Diagnosis (GradientMonitor's findings)", ""] + diagnosis_lines(rows)
    files = report["files"]
    lines += ["", "## Files", ""]
    for key, path in files.items():
        lines.append(f"- {key}: `{path}`")
    by = report.get("best_by", "val_accuracy")
    lines += [
        "",
        f"Best by {by.replace('_', ' ')}: **{report['best']}**.",
    ]
    if "load" in report:
        lines += ["", report["load"]]
    lines += [
        "",
        f"Next: `tensorboard --logdir {files.get('tensorboard', 'tensorboard')}` "
        "overlays the runs (HParams tab: the table, sortable).",
        "",
    ]
    return "\n".join(lines)
