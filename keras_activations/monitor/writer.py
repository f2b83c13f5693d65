"""Writes `GradientMonitor` records as TensorBoard events.

Events are built as protocol buffers on the host and written with
TensorBoard's own `EventFileWriter` (no TensorFlow op per value, so a
record of hundreds of values costs about a millisecond). Histograms are
written in TensorBoard's TF2 format: a `[k, 3]` tensor of
`[left edge, right edge, count]` rows with the histogram plugin's metadata,
which the TensorBoard histogram and distribution dashboards read.

The monitor's event files end in `.gradient_monitor`, so they can share a
directory with other writers and `truncate_after` touches only them.
"""

import glob
import io
import os
import tempfile
import time

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

SUFFIX = ".gradient_monitor"


def check_writable(log_dir):
    """Creates `log_dir` and checks a file can be written in it.

    Raises:
        PermissionError: naming `log_dir` and the reason, when it cannot be
            created or written.
    """
    try:
        os.makedirs(log_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=log_dir, prefix=".write_test"):
            pass
    except OSError as e:
        raise PermissionError(
            f"GradientMonitor: argument `log_dir`={log_dir!r} is not a "
            f"writable directory ({e.strerror or e}). Pass a directory you "
            "can write to, or log_dir=None to keep records in memory only."
        ) from None


def _scalar(tag, value):
    return summary_pb2.Summary.Value(
        tag=tag,
        tensor=tensor_util.make_tensor_proto(float(value), dtype=np.float32),
        metadata=scalar_metadata.create_summary_metadata(
            display_name=tag, description=""
        ),
    )


def histogram_tensor(histogram):
    """`[k, 3]` float64 array of `[left, right, count]` rows."""
    edges = np.asarray(histogram["edges"], np.float64)
    counts = np.asarray(histogram["counts"], np.float64)
    return np.stack([edges[:-1], edges[1:], counts], axis=1)


def _histogram(tag, histogram):
    return summary_pb2.Summary.Value(
        tag=tag,
        tensor=tensor_util.make_tensor_proto(histogram_tensor(histogram)),
        metadata=histogram_metadata.create_summary_metadata(
            display_name=tag, description=""
        ),
    )


def _png(image):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _image(tag, image):
    height, width = image.shape[:2]
    data = np.array([str(width).encode(), str(height).encode(), _png(image)])
    return summary_pb2.Summary.Value(
        tag=tag,
        tensor=tensor_util.make_tensor_proto(data, dtype=np.object_),
        metadata=image_metadata.create_summary_metadata(
            display_name=tag,
            description="Gradient norm (log scale), dead fraction and "
            "activation mean against layer depth (input at the left).",
            converted_to_tensor=True,
        ),
    )


LAYER_SCALARS = (
    ("gradient_norm", "gradient_norm"),
    ("gradient_cosine", "gradient_cosine"),
    ("dead_units", "dead_units"),
    ("dead_fraction", "dead_fraction"),
    ("saturation", "saturation"),
    ("activation_mean", "activation_mean"),
    ("activation_std", "activation_std"),
)


def summary_values(record, image=None):
    """Every TensorBoard value of one record."""
    values = [_scalar("gradient_norm/global", record["global_norm"])]
    for path, entry in record["variables"].items():
        values.append(_scalar(f"gradient_norm/{path}", entry["norm"]))
        values.append(_scalar(f"nonfinite_gradients/{path}", entry["nonfinite"]))
        if entry["histogram"] is not None:
            values.append(_histogram(f"gradients/{path}", entry["histogram"]))
    for name, layer in record["layers"].items():
        for key, tag in LAYER_SCALARS:
            if layer.get(key) is not None:
                values.append(_scalar(f"{tag}/{name}", layer[key]))
        if layer.get("activation_histogram") is not None:
            values.append(
                _histogram(f"activations/{name}", layer["activation_histogram"])
            )
    if image is not None:
        values.append(_image("depth_profile", image))
    return values


class EventWriter:
    """Appends records to a new event file in `log_dir`.

    Args:
        log_dir: Directory of the event files (created if needed).
    """

    def __init__(self, log_dir):
        self.log_dir = os.fspath(log_dir)
        check_writable(self.log_dir)
        self._writer = None

    def _open(self):
        if self._writer is None:
            self._writer = EventFileWriter(
                self.log_dir, max_queue_size=1000, filename_suffix=SUFFIX
            )
        return self._writer

    def write(self, record, image=None):
        """Writes one record and flushes it to disk."""
        event = event_pb2.Event(
            wall_time=time.time(),
            step=int(record["step"]),
            summary=summary_pb2.Summary(value=summary_values(record, image)),
        )
        writer = self._open()
        writer.add_event(event)
        writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def files(self):
        return sorted(glob.glob(os.path.join(self.log_dir, f"*{SUFFIX}")))

    def truncate_after(self, step):
        """Removes summaries with a step above `step` from this directory's
        monitor event files (a resumed fit writes those steps again)."""
        import tensorflow as tf

        for path in self.files():
            events = [
                event_pb2.Event.FromString(raw.numpy())
                for raw in tf.data.TFRecordDataset(path)
            ]
            keep = [
                e for e in events if not (e.HasField("summary") and e.step > step)
            ]
            if len(keep) == len(events):
                continue
            tmp = path + ".tmp"
            with tf.io.TFRecordWriter(tmp) as out:
                for e in keep:
                    out.write(e.SerializeToString())
            os.replace(tmp, path)
