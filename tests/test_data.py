"""Tests of keras_activations.compare.data: digits and tensorflow-datasets loading."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from keras_activations.compare import data as data_lib  # noqa: E402


def _labels_per_epoch(data, epochs=2, seed=0):
    keras.utils.set_random_seed(seed)
    ds = data.train_dataset()
    return [
        np.concatenate([y for _, y in ds.as_numpy_iterator()]) for _ in range(epochs)
    ]


def test_digits_shapes_scale_and_split():
    data = data_lib.load_data("digits", batch_size=50)
    assert data.input_shape == (8, 8, 1)
    assert data.num_classes == 10
    assert (data.num_train, data.num_validation) == (1437, 360)
    x, y = data.train_arrays()
    assert x.dtype == np.float32 and 0.0 == x.min() and x.max() == 1.0
    # Stratified: every class has 35 or 36 validation examples.
    _, y_val = data.validation_arrays()
    assert set(np.bincount(y_val)) <= {35, 36, 37}
    batch_x, batch_y = next(iter(data.train_dataset()))
    assert batch_x.shape == (50, 8, 8, 1) and batch_y.shape == (50,)
    flat, _ = data.train_arrays(flatten=True)
    assert flat.shape == (1437, 64)


def test_digits_split_is_fixed_by_seed():
    a = data_lib.load_data("digits", seed=0).validation_arrays()[1]
    b = data_lib.load_data("digits", seed=0).validation_arrays()[1]
    c = data_lib.load_data("digits", seed=1).validation_arrays()[1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_same_data_order_for_every_run():
    data = data_lib.load_data("digits", max_examples=200)
    first = _labels_per_epoch(data)
    tf.random.uniform([5])  # Whatever happens in between...
    keras.layers.Dense(3).build((None, 4))
    second = _labels_per_epoch(data)
    # ...every run sees the same order, epoch by epoch,
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    # reshuffled between epochs, over the same examples.
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(np.sort(first[0]), np.sort(first[1]))
    # Another seed, another order.
    other = data_lib.load_data("digits", max_examples=200, seed=3)
    assert not np.array_equal(_labels_per_epoch(other, seed=3)[0], first[0])


def test_max_examples_limits_both_splits():
    data = data_lib.load_data("digits", max_examples=100)
    assert (data.num_train, data.num_validation) == (100, 25)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "--batch-size must be a positive integer, got 0"),
        ({"max_examples": -3}, "--max-examples must be a positive integer, got -3"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(data_lib.DataError, match=match):
        data_lib.load_data("digits", **kwargs)


def test_tfds_loading_through_the_real_code_path(tmp_path):
    with tfds.testing.mock_data(num_examples=40):
        data = data_lib.load_data(
            "mnist", data_dir=str(tmp_path), batch_size=8, seed=0
        )
    assert data.name == "mnist"
    assert data.input_shape == (28, 28, 1)
    assert data.num_classes == 10
    # mock_data yields num_examples for every split it is asked for.
    assert (data.num_train, data.num_validation) == (40, 40)
    x, y = data.train_arrays()
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert x.max() > 0.5  # uint8 pixels were scaled by 1/255, not clipped.
    assert set(np.unique(y)) <= set(range(10))
    assert "tensorflow-datasets 'mnist'" in data.source
    batch_x, _ = next(iter(data.train_dataset()))
    assert batch_x.shape == (8, 28, 28, 1)


def test_tfds_color_images_and_max_examples(tmp_path):
    with tfds.testing.mock_data(num_examples=30):
        data = data_lib.load_data(
            "cifar10", data_dir=str(tmp_path), max_examples=12
        )
    assert data.input_shape == (32, 32, 3)
    assert (data.num_train, data.num_validation) == (12, 3)


def test_unprepared_tfds_dataset_says_how_to_download(tmp_path):
    with pytest.raises(data_lib.DataError) as info:
        data_lib.load_data("mnist", data_dir=str(tmp_path))
    message = str(info.value)
    assert "not prepared" in message
    assert f"tfds build mnist --data_dir {tmp_path}" in message
    assert "download=True" in message and "--data-dir" in message
    assert "\n" not in message


def test_unknown_dataset_is_one_clear_line():
    with pytest.raises(data_lib.DataError, match="'no_such_dataset' is neither 'digits' nor"):
        data_lib.load_data("no_such_dataset")


# --- The user's data: arrays, .npz, CSV, image directories, tf.data ---------------------


def test_arrays_regression_and_classification_are_inferred():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    reg = data_lib.load((x, x.sum(axis=1)), seed=0)
    assert (reg.task, reg.num_classes, reg.num_train, reg.num_validation) == (
        "regression", None, 40, 10)
    assert reg.train_arrays()[0].dtype == np.float32
    cls = data_lib.load((x, (x[:, 0] > 0).astype(int)), seed=0)
    assert (cls.task, cls.num_classes) == ("classification", 2)
    # The split is fixed by the seed and keeps every example once.
    again = data_lib.load((x, x.sum(axis=1)), seed=0)
    np.testing.assert_array_equal(reg.validation_arrays()[1], again.validation_arrays()[1])
    both = np.sort(np.concatenate([reg.train_arrays()[1], reg.validation_arrays()[1]]))
    np.testing.assert_allclose(both, np.sort(x.sum(axis=1).astype("float32")))
    forced = data_lib.load((x, (x[:, 0] > 0).astype(int)), task="regression")
    assert forced.task == "regression"


def test_npz_with_and_without_validation_arrays(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4, 4, 1)), rng.integers(0, 3, size=30)
    np.savez(tmp_path / "a.npz", x=x, y=y, x_val=x[:7], y_val=y[:7])
    data = data_lib.load(str(tmp_path / "a.npz"))
    assert (data.name, data.input_shape, data.num_train, data.num_validation) == (
        "a.npz", (4, 4, 1), 30, 7)
    np.testing.assert_array_equal(data.validation_arrays()[1], y[:7])
    np.savez(tmp_path / "b.npz", x=x, y=y)
    assert data_lib.load(str(tmp_path / "b.npz")).num_validation == 6
    np.savez(tmp_path / "c.npz", features=x)
    with pytest.raises(data_lib.DataError, match=r"has arrays \['features'\]; it needs 'x' and 'y'"):
        data_lib.load(str(tmp_path / "c.npz"))
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(data_lib.DataError, match="is not a readable .npz file"):
        data_lib.load(str(tmp_path / "d.npz"))


def test_csv_with_a_named_target_column(tmp_path):
    path = tmp_path / "flowers.csv"
    lines = ["length,width,kind"] + [
        f"{i * 0.1:.1f},{i % 3},{['iris', 'rose', 'tulip'][i % 3]}" for i in range(30)]
    path.write_text("\n".join(lines) + "\n")
    data = data_lib.load(str(path), target="kind")
    assert (data.task, data.num_classes, data.class_names) == (
        "classification", 3, ["iris", "rose", "tulip"])
    assert data.input_shape == (2,)
    x, y = data.train_arrays()
    # Labels follow the rows: kind is i % 3, like the width column.
    np.testing.assert_array_equal(y, x[:, 1].astype(int))
    numeric = tmp_path / "houses.csv"
    numeric.write_text("rooms,price\n" + "".join(f"{i},{2.5 * i}\n" for i in range(10)))
    reg = data_lib.load(str(numeric), target="price")
    assert reg.task == "regression" and reg.input_shape == (1,)
    x, y = reg.train_arrays()
    np.testing.assert_allclose(y, 2.5 * x[:, 0])
    with pytest.raises(data_lib.DataError, match="name its target column with --target"):
        data_lib.load(str(path))
    with pytest.raises(data_lib.DataError, match="'colour' is not a column.*length, width, kind"):
        data_lib.load(str(path), target="colour")
    with pytest.raises(data_lib.DataError, match="feature columns must be numbers"):
        data_lib.load(str(path), target="width")


def test_image_directory(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for label in ("cat", "dog"):
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / label / f"{i}.png")
    data = data_lib.load(str(tmp_path / "img"), image_size=(8, 8))
    assert (data.input_shape, data.num_classes, data.class_names) == ((8, 8, 3), 2, ["cat", "dog"])
    assert data.num_train + data.num_validation == 10
    x, _ = data.train_arrays()
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    raw = data_lib.load(str(tmp_path / "img"), image_size=(8, 8), rescale=False)
    assert raw.train_arrays()[0].max() > 1.0
    (tmp_path / "empty").mkdir()
    with pytest.raises(data_lib.DataError, match="not a directory of images"):
        data_lib.load(str(tmp_path / "empty"))


def test_tf_data_batched_unbatched_and_pairs():
    x = np.arange(40, dtype="float32").reshape(20, 2)
    y = np.arange(20) % 2
    examples = tf.data.Dataset.from_tensor_slices((x, y))
    for ds in (examples, examples.batch(6), examples.batch(5, drop_remainder=True)):
        data = data_lib.load(ds, seed=0)
        assert (data.num_train + data.num_validation, data.input_shape) == (20, (2,))
        tx, ty = data.train_arrays()
        np.testing.assert_array_equal(ty, (tx[:, 0] / 2).astype(int) % 2)
    pair = data_lib.load((examples.take(15).batch(4), examples.skip(15).batch(4)))
    assert (pair.num_train, pair.num_validation) == (15, 5)
    with pytest.raises(data_lib.DataError, match="must yield \\(x, y\\) pairs"):
        data_lib.load(tf.data.Dataset.from_tensor_slices(x))


@pytest.mark.parametrize(
    "source, kwargs, match",
    [
        ("no/such/file.npz", {}, "does not exist"),
        ((np.zeros((4, 2)), np.zeros(3)), {}, "x has 4 examples but y has 3"),
        ((np.zeros((4, 2)), np.array([0, 1, -1, 0])), {}, "class labels must be >= 0"),
        ((np.zeros((4, 2)), np.array([0.0, np.nan, 1, 0])), {}, "regression targets contain NaN"),
        ({"features": 1}, {}, "needs keys 'x' and 'y'"),
        (42, {}, "cannot use data of type int"),
    ],
)
def test_bad_user_data_is_one_clear_line(source, kwargs, match):
    with pytest.raises(data_lib.DataError, match=match) as info:
        data_lib.load(source, **kwargs)
    assert "\n" not in str(info.value)
