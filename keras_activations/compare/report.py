"""`report.json` and `report.md`: what `compare` measured, per activation."""

import json
import math

from keras_activations.compare import run as run_lib

# (key in a row, column title, format)
COLUMNS = (
    ("activation", "activation", "{}"),
    ("init", "init", "{}"),
    ("train_loss", "train loss", "{:.4f}"),
    ("val_loss", "val loss", "{:.4f}"),
    ("train_accuracy", "train acc", "{:.3f}"),
    ("val_accuracy", "val acc", "{:.3f}"),
    ("epochs_to_target", "epochs to {target}", "{}"),
    ("grad_ratio", "grad norm first/last", "{:.3g}"),
    ("dead_fraction", "dead fraction", "{:.3f}"),
    ("activation_mean", "mean activation", "{:+.3f}"),
    ("gradient_cosine", "grad cosine", "{:.3f}"),
    ("seconds_per_epoch", "s/epoch", "{:.2f}"),
)


def result_row(result, target_accuracy):
    """One row of the report for a `run.RunResult` (plain, JSON-able values)."""
    summary = run_lib.summarize_monitor(result.monitor_history)
    return {
        "activation": result.activation,
        "init": result.initializer,
        "params": result.params,
        "train_loss": result.final("loss"),
        "val_loss": result.final("val_loss"),
        "train_accuracy": result.final("accuracy"),
        "val_accuracy": result.final("val_accuracy"),
        "epochs_to_target": result.epochs_to(target_accuracy),
        "grad_ratio": summary["grad_ratio"],
        "dead_fraction": summary["dead_fraction"],
        "activation_mean": summary["activation_mean"],
        "gradient_cosine": summary["gradient_cosine"],
        "saturation": summary["saturation"],
        "seconds_per_epoch": result.seconds_per_epoch(),
        "history": result.history,
        "epoch_seconds": result.epoch_seconds,
        "by_depth": summary["by_depth"],
        "tensorboard": result.log_dir,
    }


def best_row(rows):
    """The row with the highest final validation accuracy (then lowest loss)."""
    def key(row):
        acc = row["val_accuracy"]
        loss = row["val_loss"]
        return (
            acc if math.isfinite(acc) else -1.0,
            -loss if math.isfinite(loss) else -math.inf,
        )

    return max(rows, key=key)


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


def markdown_table(rows, target_accuracy):
    """The per-activation table as Markdown."""
    titles = [title.format(target=target_accuracy) for _, title, _ in COLUMNS]
    lines = [
        "| " + " | ".join(titles) + " |",
        "|" + "|".join("---" for _ in titles) + "|",
    ]
    for row in rows:
        cells = [_cell(row, key, fmt) for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
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


def render_markdown(report):
    """`report.md`'s text for a report dict (as written to report.json)."""
    config = report["config"]
    data = report["data"]
    rows = report["runs"]
    target = config["target_accuracy"]
    lines = [
        "# keras-activations compare",
        "",
        f"Dataset: {data['name']}, {data['num_train']} training / "
        f"{data['num_validation']} validation examples, input "
        f"{tuple(data['input_shape'])}, {data['num_classes']} classes "
        f"({data['source']}).",
        f"Model: {config['model'].upper()}, {config['depth']} hidden layers of "
        f"width {config['width']}; {config['optimizer']} "
        f"(learning rate {config['learning_rate']}"
        + (f", momentum {config['momentum']}" if config["optimizer"] == "sgd" else "")
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
    grad = depth_table(rows, "gradient_norm")
    if grad:
        lines += ["", "## Gradient norm by depth (input to output, mean over training)", "", grad]
    dead = depth_table(rows, "dead_fraction", "{:.3f}")
    if dead:
        lines += ["", "## Dead fraction by depth", "", dead]
    act = depth_table(rows, "activation_mean", "{:+.3f}")
    if act:
        lines += ["", "## Mean activation by depth", "", act]
    files = report["files"]
    lines += ["", "## Files", ""]
    for key, path in files.items():
        lines.append(f"- {key}: `{path}`")
    lines += [
        "",
        f"Best validation accuracy: **{report['best']}**.",
    ]
    if "load" in report:
        lines += ["", report["load"]]
    lines += [
        "",
        f"Next: `tensorboard --logdir {files.get('tensorboard', 'tensorboard')}` "
        "overlays the runs.",
        "",
    ]
    return "\n".join(lines)
