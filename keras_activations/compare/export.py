"""Saving the best model as `.keras` and as a SavedModel for serving."""

import os


def export_model(model, out_dir, name="best_model"):
    """Saves `model` as `<out_dir>/<name>.keras` and exports a SavedModel.

    The SavedModel goes to `<out_dir>/<name>_savedmodel/1` (a version
    directory, the layout TensorFlow Serving expects); its `serve`
    endpoint maps a float32 image batch to class probabilities.

    Args:
        model: A built Keras model.
        out_dir: Output directory (must exist).
        name: File name stem. Defaults to `"best_model"`.

    Returns:
        A dict with `keras` and `savedmodel` paths and `load`, a line saying
        how to load and serve them.

    Example:

    >>> paths = export_model(model, "runs/compare")  # doctest: +SKIP
    >>> paths["keras"]
    'runs/compare/best_model.keras'
    """
    keras_path = os.path.join(out_dir, f"{name}.keras")
    model.save(keras_path)
    base = os.path.join(out_dir, f"{name}_savedmodel")
    savedmodel_path = os.path.join(base, "1")
    model.export(savedmodel_path, verbose=False)
    load = (
        f"Load: `keras.models.load_model('{keras_path}')` (no custom_objects "
        f"needed once keras_activations is imported); serve: "
        f"`tf.saved_model.load('{savedmodel_path}').serve(images)` in Python, "
        f"or TensorFlow Serving with `--model_base_path={os.path.abspath(base)}`."
    )
    return {"keras": keras_path, "savedmodel": savedmodel_path, "load": load}
