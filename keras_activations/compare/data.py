"""Datasets for `keras-activations compare`: the user's data, digits and tensorflow-datasets.

`load_data` takes NumPy arrays, an `.npz` file, a CSV file with a target column, a directory of
images, a `tf.data.Dataset`, scikit-learn's bundled digits or a tensorflow-datasets name. Every
source is read into memory once and returns a `Data` with a training and a validation
`tf.data.Dataset` whose order is fixed by a seed, so that every activation in a comparison sees
exactly the same batches in exactly the same order.
"""

import csv
import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_activations.compare.errors import CompareError

DEFAULT_DATASET = "digits"


class DataError(CompareError):
    """A dataset that cannot be loaded; the message says why and what to do."""


@dataclasses.dataclass
class Data:
    """A classification or regression dataset ready for training.

    Attributes:
        name: Dataset name (`"digits"`, a tensorflow-datasets name, a file name, ...).
        input_shape: Shape of one example, e.g. `(8, 8, 1)`.
        num_classes: Number of labels (None for regression).
        num_train: Number of training examples.
        num_validation: Number of validation examples.
        batch_size: Batch size of both datasets.
        seed: Seed of the split and of the shuffle order.
        source: One line describing where the data came from.
    """

    name: str
    input_shape: tuple
    num_classes: int
    num_train: int
    num_validation: int
    batch_size: int
    seed: int
    source: str
    task: str = "classification"
    class_names: list = None
    _train_images: np.ndarray = dataclasses.field(repr=False, default=None)
    _train_labels: np.ndarray = dataclasses.field(repr=False, default=None)
    _val_images: np.ndarray = dataclasses.field(repr=False, default=None)
    _val_labels: np.ndarray = dataclasses.field(repr=False, default=None)

    def train_dataset(self, flatten=False):
        """Training batches, shuffled each epoch in an order fixed by `seed`.

        Two datasets made by two calls yield the same batches in the same order, epoch
        after epoch, whatever happened to TensorFlow's global random state in between.

        Args:
            flatten: If True, images are flattened to vectors (for MLPs).

        Returns:
            A `tf.data.Dataset` of `(images, labels)` batches.
        """
        ds = tf.data.Dataset.from_tensor_slices(
            (self._prepare(self._train_images, flatten), self._train_labels)
        )
        # The op-level seed fixes the order, epoch after epoch, for a given
        # global seed (`keras.utils.set_random_seed`, set once per run).
        ds = ds.shuffle(
            self.num_train,
            seed=self.seed,
            reshuffle_each_iteration=True,
        )
        return ds.batch(self.batch_size).prefetch(2)

    def validation_dataset(self, flatten=False):
        """Validation batches in a fixed order (not shuffled).

        Args:
            flatten: If True, images are flattened to vectors (for MLPs).

        Returns:
            A `tf.data.Dataset` of `(images, labels)` batches.
        """
        ds = tf.data.Dataset.from_tensor_slices(
            (self._prepare(self._val_images, flatten), self._val_labels)
        )
        return ds.batch(self.batch_size).prefetch(2)

    def train_arrays(self, flatten=False):
        """The training set as NumPy arrays `(images, labels)`, unshuffled."""
        return self._prepare(self._train_images, flatten), self._train_labels

    def validation_arrays(self, flatten=False):
        """The validation set as NumPy arrays `(images, labels)`."""
        return self._prepare(self._val_images, flatten), self._val_labels

    def _prepare(self, images, flatten):
        if flatten:
            return images.reshape((images.shape[0], -1))
        return images


def load_data(
    name=DEFAULT_DATASET,
    data_dir=None,
    batch_size=32,
    seed=0,
    validation_fraction=0.2,
    max_examples=None,
):
    """Loads a dataset for `compare` and the examples.

    Args:
        name: `"digits"` (scikit-learn's bundled 8x8 handwritten digits, 1,797
            images, no download) or the name of any image classification
            dataset of tensorflow-datasets (`"mnist"`, `"fashion_mnist"`,
            `"cifar10"`, ...), which must already be prepared in `data_dir`.
        data_dir: Where tensorflow-datasets looks for prepared data. Defaults
            to tensorflow-datasets' own default (`~/tensorflow_datasets`).
        batch_size: Batch size. Defaults to 32.
        seed: Seed of the train/validation split and of the shuffle order.
            Defaults to 0.
        validation_fraction: For digits, and for tfds datasets without a
            `test`/`validation` split, the fraction held out. Defaults to 0.2.
        max_examples: If set, use at most this many training examples (and
            at most a quarter of it, at least 1, for validation). Defaults to
            None (all).

    Returns:
        A `Data`.

    Raises:
        DataError: The dataset is unknown or not prepared offline; the message
            says how to download it.

    Example:

    >>> data = load_data("digits", seed=0)
    >>> data.input_shape, data.num_classes, data.num_train
    ((8, 8, 1), 10, 1437)
    """
    if batch_size < 1:
        raise DataError(f"--batch-size must be a positive integer, got {batch_size}.")
    if not 0.0 < validation_fraction < 1.0:
        raise DataError(
            f"validation_fraction must be in (0, 1), got {validation_fraction}."
        )
    if max_examples is not None and max_examples < 1:
        raise DataError(
            f"--max-examples must be a positive integer, got {max_examples}."
        )
    if name == "digits":
        arrays = _load_digits(seed, validation_fraction)
        source = "scikit-learn load_digits (bundled, 8x8 grey images scaled to [0, 1])"
        num_classes = 10
    else:
        arrays, num_classes, source = _load_tfds(
            name, data_dir, seed, validation_fraction, max_examples
        )
    x_train, y_train, x_val, y_val = arrays
    if max_examples is not None:
        x_train, y_train = x_train[:max_examples], y_train[:max_examples]
        n_val = max(1, max_examples // 4)
        x_val, y_val = x_val[:n_val], y_val[:n_val]
    return Data(
        name=name,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        num_classes=int(num_classes),
        num_train=int(x_train.shape[0]),
        num_validation=int(x_val.shape[0]),
        batch_size=int(batch_size),
        seed=int(seed),
        source=source,
        _train_images=x_train,
        _train_labels=y_train,
        _val_images=x_val,
        _val_labels=y_val,
    )


def _load_digits(seed, validation_fraction):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., np.newaxis]
    labels = digits.target.astype("int32")
    x_train, x_val, y_train, y_val = train_test_split(
        images,
        labels,
        test_size=validation_fraction,
        random_state=seed,
        stratify=labels,
    )
    return x_train, y_train, x_val, y_val


def download_hint(name, data_dir=None):
    """One line saying how to prepare a tensorflow-datasets dataset for offline use."""
    target = data_dir or "~/tensorflow_datasets"
    return (
        f"on a machine with internet access run `tfds build {name} "
        f"--data_dir {target}` (or `tfds.load('{name}', data_dir='{target}', "
        f"download=True)` in Python), copy that directory here and pass "
        f"--data-dir {target}"
    )


def _load_tfds(name, data_dir, seed, validation_fraction, max_examples):
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends.
        raise DataError(
            f"--dataset {name!r} is neither 'digits' nor a tensorflow-datasets "
            f"dataset ({type(e).__name__}); see `tfds.list_builders()` for the "
            f"names."
        ) from None
    info = builder.info
    features = info.features
    if "image" not in features or "label" not in features:
        raise DataError(
            f"--dataset {name!r} is not an image classification dataset "
            f"(its features are {sorted(features.keys())}; 'image' and "
            f"'label' are needed)."
        )
    num_classes = features["label"].num_classes
    split_names = set(info.splits.keys())
    if split_names and "train" not in split_names:
        raise DataError(
            f"--dataset {name!r} has no 'train' split (it has "
            f"{sorted(split_names)})."
        )
    held_out = next(
        (s for s in ("validation", "test") if s in split_names), None
    )
    if held_out is None:
        percent = int(round(100 * (1 - validation_fraction)))
        splits = [f"train[:{percent}%]", f"train[{percent}%:]"]
    else:
        splits = ["train", held_out]
    try:
        train_ds, val_ds = tfds.load(
            name,
            split=splits,
            data_dir=data_dir,
            as_supervised=True,
            download=False,
        )
    except Exception as e:  # AssertionError / DatasetNotFoundError when not prepared.
        raise DataError(
            f"--dataset {name!r} is not prepared in "
            f"{data_dir or '~/tensorflow_datasets'} and cannot be downloaded "
            f"here ({type(e).__name__}): {download_hint(name, data_dir)}."
        ) from None
    n_val = None if max_examples is None else max(1, max_examples // 4)
    x_train, y_train = _to_arrays(train_ds, max_examples)
    x_val, y_val = _to_arrays(val_ds, n_val)
    source = (
        f"tensorflow-datasets {name!r} (splits {splits[0]!r} / {splits[1]!r}, "
        f"data_dir={data_dir or 'default'}), images scaled to [0, 1]"
    )
    return (x_train, y_train, x_val, y_val), num_classes, source


def _to_arrays(ds, limit):
    if limit is not None:
        ds = ds.take(limit)
    images, labels = [], []
    for image, label in ds.batch(1024).as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        raise DataError("the dataset split is empty.")
    x = np.concatenate(images).astype("float32")
    if np.issubdtype(images[0].dtype, np.integer):
        x = x / 255.0
    if x.ndim == 3:
        x = x[..., np.newaxis]
    return x, np.concatenate(labels).astype("int32")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def load(
    source=DEFAULT_DATASET,
    *,
    target=None,
    validation_data=None,
    image_size=None,
    rescale=True,
    task=None,
    data_dir=None,
    batch_size=32,
    seed=0,
    validation_fraction=0.2,
    max_examples=None,
):
    """Loads any data source `compare` takes into a `Data`.

    Args:
        source: One of
            - `"digits"` or a tensorflow-datasets name (see `load_data`);
            - a path: an `.npz` file with arrays `x`, `y` (and optional `x_val`, `y_val`),
              a `.csv` file (numeric feature columns and the `target` column), or a
              directory of images in one sub-directory per class
              (`keras.utils.image_dataset_from_directory`);
            - NumPy arrays `(x, y)` or `(x, y, x_val, y_val)`, or a dict with those keys;
            - a `tf.data.Dataset` of `(x, y)` (batched as `fit` takes it, or not), or a pair
              `(train_dataset, validation_dataset)`;
            - a `Data` (returned as it is).
        target: The CSV column to predict (required for CSV).
        validation_data: Validation `(x_val, y_val)` or a `tf.data.Dataset`, as `fit` takes
            it; without it (and without `x_val`), a seeded `validation_fraction` is held out.
        image_size: `(height, width)` images from a directory are resized to. Defaults to
            Keras's `(256, 256)`.
        rescale: Scale image pixels (directories) to [0, 1]. Defaults to True.
        task: `"classification"` or `"regression"`; defaults to what the targets say
            (integer, boolean or string labels: classification; floats: regression).
        data_dir, batch_size, seed, validation_fraction, max_examples: See `load_data`.

    Returns:
        A `Data`.

    Raises:
        DataError: The source cannot be read or does not fit; the message says why.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(100, 3)).astype("float32")
    >>> data = load((x, x.sum(axis=1)), seed=0)
    >>> data.task, data.num_train, data.num_validation
    ('regression', 80, 20)
    """
    if isinstance(source, Data):
        return source
    options = dict(batch_size=batch_size, seed=seed, validation_fraction=validation_fraction,
                   max_examples=max_examples, task=task)
    if task not in (None, "classification", "regression"):
        raise DataError(f"task must be 'classification' or 'regression', got {task!r}.")
    if validation_data is not None:
        validation_data = _as_xy(validation_data, "validation_data")
    if isinstance(source, (str, os.PathLike)) and (
        os.path.exists(source) or os.sep in str(source) or str(source).endswith((".npz", ".csv"))
    ):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise DataError(f"--data {path!r} does not exist.")
        name = os.path.basename(os.path.normpath(path))
        if os.path.isdir(path):
            x, y, names = _read_image_dir(path, image_size, rescale)
            return from_arrays(x, y, *(validation_data or (None, None)), name=name,
                               source=f"images in {path} ({len(names)} classes: {', '.join(names[:10])}"
                               f"{', ...' if len(names) > 10 else ''}), resized to {x.shape[1:3]}"
                               + (", scaled to [0, 1]" if rescale else ""),
                               class_names=names, **{**options, "task": "classification"})
        if path.endswith(".npz"):
            arrays = _read_npz(path)
            if validation_data is not None:
                arrays["x_val"], arrays["y_val"] = validation_data
            return from_arrays(arrays["x"], arrays["y"], arrays.get("x_val"), arrays.get("y_val"),
                               name=name, source=f"NumPy arrays from {path}", **options)
        if path.endswith(".csv"):
            x, y, class_names, columns = _read_csv(path, target, task)
            return from_arrays(x, y, *(validation_data or (None, None)), name=name,
                               source=f"{path}: {x.shape[1]} feature columns, target {target!r}",
                               class_names=class_names, **options)
        raise DataError(
            f"--data {path!r} is neither a directory of images nor an .npz or .csv file."
        )
    if isinstance(source, str):
        if validation_data is not None:
            raise DataError("validation_data goes with arrays or files, not with a dataset name.")
        return load_data(source, data_dir=data_dir, batch_size=batch_size, seed=seed,
                         validation_fraction=validation_fraction, max_examples=max_examples)
    if isinstance(source, dict):
        missing = [k for k in ("x", "y") if k not in source]
        if missing:
            raise DataError(f"the data dict needs keys 'x' and 'y' (it has {sorted(source)}).")
        val = validation_data or (source.get("x_val"), source.get("y_val"))
        return from_arrays(source["x"], source["y"], *val, name="arrays",
                           source="NumPy arrays", **options)
    if isinstance(source, tf.data.Dataset):
        x, y = _dataset_arrays(source, "data")
        return from_arrays(x, y, *(validation_data or (None, None)), name="tf.data.Dataset",
                           source="a tf.data.Dataset, read into memory", **options)
    if isinstance(source, (tuple, list)):
        if len(source) == 2 and all(isinstance(s, tf.data.Dataset) for s in source):
            x, y = _dataset_arrays(source[0], "data")
            x_val, y_val = _dataset_arrays(source[1], "validation data")
            return from_arrays(x, y, x_val, y_val, name="tf.data.Dataset",
                               source="tf.data.Datasets, read into memory", **options)
        if len(source) in (2, 4):
            x, y = source[0], source[1]
            x_val, y_val = source[2:] if len(source) == 4 else (validation_data or (None, None))
            return from_arrays(x, y, x_val, y_val, name="arrays", source="NumPy arrays",
                               **options)
    raise DataError(
        f"cannot use data of type {type(source).__name__}: give (x, y) arrays, an .npz, .csv "
        f"or image directory path, a tf.data.Dataset, 'digits' or a tensorflow-datasets name."
    )


def from_arrays(x, y, x_val=None, y_val=None, *, name="arrays", source="NumPy arrays",
                class_names=None, batch_size=32, seed=0, validation_fraction=0.2,
                max_examples=None, task=None):
    """A `Data` from NumPy arrays; without `x_val`, a seeded `validation_fraction` is held out.

    Integer, boolean and string targets make a classification task (string labels become
    indices into the sorted names), float targets a regression, unless `task` says otherwise.
    """
    if batch_size < 1:
        raise DataError(f"--batch-size must be a positive integer, got {batch_size}.")
    if max_examples is not None and max_examples < 1:
        raise DataError(f"--max-examples must be a positive integer, got {max_examples}.")
    if (x_val is None) != (y_val is None):
        raise DataError("give both x_val and y_val, or neither.")
    x, y = _checked(x, y, "x", "y")
    y, task, class_names = _targets(y, task, class_names)
    if x_val is None:
        if not 0.0 < validation_fraction < 1.0:
            raise DataError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
        x, y, x_val, y_val = _split(x, y, task, seed, validation_fraction)
    else:
        x_val, y_val = _checked(x_val, y_val, "x_val", "y_val")
        if x_val.shape[1:] != x.shape[1:]:
            raise DataError(
                f"x_val's examples have shape {x_val.shape[1:]} but x's have {x.shape[1:]}."
            )
        y_val, _, _ = _targets(y_val, task, class_names)
    if max_examples is not None:
        x, y = x[:max_examples], y[:max_examples]
        n_val = max(1, max_examples // 4)
        x_val, y_val = x_val[:n_val], y_val[:n_val]
    num_classes = None
    if task == "classification":
        num_classes = len(class_names) if class_names else int(max(y.max(), y_val.max())) + 1
    return Data(
        name=name, input_shape=tuple(int(d) for d in x.shape[1:]), num_classes=num_classes,
        num_train=int(x.shape[0]), num_validation=int(x_val.shape[0]),
        batch_size=int(batch_size), seed=int(seed), source=source, task=task,
        class_names=list(class_names) if class_names else None,
        _train_images=x, _train_labels=y, _val_images=x_val, _val_labels=y_val,
    )


def _checked(x, y, x_name, y_name):
    try:
        x = np.asarray(x)
        y = np.asarray(y)
    except Exception as e:  # ragged lists and friends
        raise DataError(f"{x_name}/{y_name} are not arrays ({e}).") from None
    if x.ndim < 1 or x.shape[0] == 0:
        raise DataError(f"{x_name} is empty (shape {x.shape}).")
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{x_name} has {x.shape[0]} examples but {y_name} has {y.shape[0]}."
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{x_name} must be numeric, got dtype {x.dtype}.")
    x = x.astype("float32")
    if x.ndim == 1:
        x = x[:, np.newaxis]
    return x, y


def _targets(y, task, class_names):
    """(y as int32 labels or float32 targets, task, class names)."""
    if y.dtype.kind in "USO":
        names = class_names or sorted({str(v) for v in y.ravel()})
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted({str(v) for v in y.ravel()} - set(index))
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not among the classes {names[:10]}.")
        y = np.array([index[str(v)] for v in y.ravel()], dtype="int32").reshape(y.shape)
        inferred, class_names = "classification", names
    elif y.dtype.kind in "iub":
        inferred = "classification"
    elif y.dtype.kind == "f":
        inferred = "regression"
    else:
        raise DataError(f"targets must be numbers or strings, got dtype {y.dtype}.")
    task = task or inferred
    if task == "classification":
        if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
            raise DataError("classification targets must be whole numbers (class indices).")
        y = y.astype("int32")
        if y.size and y.min() < 0:
            raise DataError(f"class labels must be >= 0, got {int(y.min())}.")
    else:
        y = y.astype("float32")
        if not np.all(np.isfinite(y)):
            raise DataError("regression targets contain NaN or inf.")
    return y, task, class_names


def _split(x, y, task, seed, fraction):
    from sklearn.model_selection import train_test_split

    stratify = None
    if task == "classification" and y.ndim == 1:
        counts = np.bincount(y)
        n_val = int(np.ceil(fraction * len(y)))
        if counts[counts > 0].min() >= 2 and n_val >= np.count_nonzero(counts):
            stratify = y
    if len(y) < 2:
        raise DataError(f"need at least 2 examples to hold some out for validation, got {len(y)}.")
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=fraction, random_state=seed, stratify=stratify)
    return x_train, y_train, x_val, y_val


def _as_xy(value, what):
    if isinstance(value, tf.data.Dataset):
        return _dataset_arrays(value, what)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value
    raise DataError(f"{what} must be (x_val, y_val) or a tf.data.Dataset.")


def _dataset_arrays(ds, what):
    """A `tf.data.Dataset` of `(x, y)` read into memory: (x, y) arrays.

    A dataset is taken as batched when x's leading dimension is unknown or y's leading
    dimension equals x's (as `batch` makes it); otherwise as single examples.
    """
    spec = ds.element_spec
    if not (isinstance(spec, tuple) and len(spec) >= 2):
        raise DataError(
            f"the {what} tf.data.Dataset must yield (x, y) pairs; its elements are {spec}."
        )
    x_spec, y_spec = spec[0], spec[1]
    if not isinstance(x_spec, tf.TensorSpec) or not isinstance(y_spec, tf.TensorSpec):
        raise DataError(f"the {what} tf.data.Dataset must yield (x, y) tensors, not {spec}.")
    batched = x_spec.shape.rank and (
        x_spec.shape[0] is None or (y_spec.shape.rank and y_spec.shape[0] == x_spec.shape[0])
    )
    if not batched:
        ds = ds.batch(1024)
    xs, ys = [], []
    for element in ds.as_numpy_iterator():
        xs.append(element[0])
        ys.append(element[1])
    if not xs:
        raise DataError(f"the {what} tf.data.Dataset is empty.")
    return np.concatenate(xs), np.concatenate(ys)


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise DataError(f"--data {path!r} is not a readable .npz file ({type(e).__name__}: {e}).") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(
            f"--data {path!r} has arrays {sorted(arrays)}; it needs 'x' and 'y' "
            f"(and optionally 'x_val' and 'y_val')."
        )
    return arrays


def _read_csv(path, target, task):
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"--data {path!r} cannot be read ({type(e).__name__}: {e}).") from None
    if len(rows) < 2:
        raise DataError(f"--data {path!r} needs a header row and at least one data row.")
    header = [h.strip() for h in rows[0]]
    if target is None or target not in header:
        raise DataError(
            f"--data {path!r} is a CSV file: name its target column with --target "
            f"(target=...); its columns are {', '.join(header)}."
            if target is None else
            f"--target {target!r} is not a column of {path!r}; its columns are {', '.join(header)}."
        )
    rows = [r for r in rows[1:] if any(c.strip() for c in r)]
    bad = [i + 2 for i, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        raise DataError(f"--data {path!r}: line {bad[0]} has a different number of columns than the header.")
    t = header.index(target)
    features = [i for i in range(len(header)) if i != t]
    try:
        x = np.array([[float(r[i]) for i in features] for r in rows], dtype="float32")
    except ValueError as e:
        raise DataError(
            f"--data {path!r}: feature columns must be numbers ({e}); only the target column "
            f"may hold labels."
        ) from None
    labels = [r[t].strip() for r in rows]
    try:
        values = np.array([float(v) for v in labels])
        whole = np.all(values == np.round(values))
        if task == "classification" or (task is None and whole and all("." not in v for v in labels)):
            y, names = values.astype("int64"), None
        else:
            y, names = values.astype("float32"), None
    except ValueError:
        y, names = np.array(labels), None
    return x, y, names, header


def _read_image_dir(path, image_size, rescale):
    import keras

    try:
        ds = keras.utils.image_dataset_from_directory(
            path, labels="inferred", label_mode="int", image_size=tuple(image_size or (256, 256)),
            batch_size=256, shuffle=False, verbose=False,
        )
    except (ValueError, OSError) as e:
        raise DataError(
            f"--data {path!r} is not a directory of images in one sub-directory per class "
            f"({e})."
        ) from None
    names = list(ds.class_names)
    x, y = _dataset_arrays(ds, "image")
    if rescale:
        x = x / 255.0
    return x.astype("float32"), y.astype("int32"), names
