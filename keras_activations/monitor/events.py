"""TensorBoard event files of the monitor's records.

Every value written comes from a record (`record.py`): `summaries` turns a
record into a `Summary` protocol buffer, and `EventFile` appends it with
TensorFlow's native `TFRecordWriter` (an event file is a TFRecord file;
TensorBoard's own writer computes the checksums in Python).

Scalars are float32 tensors (the scalar plugin's format), histograms
`[bins, 3]` float64 tensors of `[left edge, right edge, count]` rows (the
histogram plugin's TF2 format), images `[width, height, png]` strings and
texts (the diagnosis) scalar string tensors of Markdown (the text
plugin's).
Plugin metadata goes only with a tag's first value in a file (all that
TensorBoard reads). A file starts with the custom-scalars layout
(`dashboard.py`).
"""

import os
import socket
import struct
import time
import zlib

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.proto import tensor_shape_pb2
from tensorboard.compat.proto import types_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata

from keras_activations.monitor import plots
from keras_activations.monitor import dashboard
from keras_activations.monitor.record import LAYER_SCALARS
from keras_activations.monitor.record import VARIABLE_SCALARS

SUFFIX = ".gradient_monitor"
IMAGE_DESCRIPTION = (
    "One row per layer, input at the top (a layer's weights and its "
    "activation together): gradient norm (log scale), dead fraction, "
    "activation mean (and update ratio, log scale), each with its value."
)
_FILES = 0  # files opened by this process (part of the file name)


def _shape(*dims):
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
    )


def scalars(record):
    """`(tag, value)` of every scalar a record holds, in event order."""
    out = []
    if record["global_norm"] is not None:
        out.append(("gradient_norm/global", record["global_norm"]))
    for key, figure in VARIABLE_SCALARS:
        for path, entry in record["variables"].items():
            if entry[figure] is not None:
                out.append((f"{key}/{path}", entry[figure]))
    for name, entry in record["layers"].items():
        for key in LAYER_SCALARS:
            if entry[key] is not None:
                out.append((f"{key}/{name}", entry[key]))
    return out


def histograms(record):
    """`(tag, {"edges", "counts"})` of every histogram a record holds."""
    out = [
        (f"gradients/{path}", entry["histogram"])
        for path, entry in record["variables"].items()
        if entry["histogram"] is not None
    ]
    out += [
        (f"activations/{name}", entry["activation_histogram"])
        for name, entry in record["layers"].items()
        if entry["activation_histogram"] is not None
    ]
    return out


class EventFile:
    """A new event file in `log_dir`, appended one record at a time.

    Args:
        log_dir: Existing, writable directory.
        flush_secs: Flush when this many seconds passed since the last
            flush (checked at each write), and at `close`.
        layout: Whether the file starts with the custom-scalars layout
            (`dashboard.layout`, at step 0).
    """

    def __init__(self, log_dir, flush_secs=2.0, layout=True):
        import tensorflow as tf

        global _FILES
        _FILES += 1
        self.path = os.path.join(
            log_dir,
            "events.out.tfevents.%010d.%s.%s.%s%s"
            % (time.time(), socket.gethostname(), os.getpid(), _FILES, SUFFIX),
        )
        self.flush_secs = float(flush_secs)
        self._seen = set()  # tags whose metadata is in the file
        self._key = self._cached = None
        self._writer = tf.io.TFRecordWriter(self.path)
        first = event_pb2.Event(
            wall_time=time.time(),
            file_version="brain.Event:2",
            source_metadata=event_pb2.SourceMetadata(
                writer="keras_activations.GradientMonitor"
            ),
        )
        self._writer.write(first.SerializeToString())
        if layout:
            event = event_pb2.Event(wall_time=time.time(), step=0, summary=dashboard.summary())
            self._writer.write(event.SerializeToString())
        self.flush()

    def _summary(self, scalar_tags, histogram_shapes, image):
        """A `Summary` with a value for each tag, its tensors to be filled
        in: made once per set of tags and reused (a record has the same tags
        as the one before, but for the first cosine or a missing figure).
        Plugin metadata only with a tag's first value in the file."""
        key = (scalar_tags, histogram_shapes, image)
        if key == self._key:
            return self._cached
        summary = summary_pb2.Summary()
        for tag in scalar_tags:
            value = summary.value.add(tag=tag)
            value.tensor.dtype = types_pb2.DT_FLOAT
            value.tensor.tensor_shape.CopyFrom(_shape())
            value.tensor.float_val.append(0.0)
            if tag not in self._seen:
                value.metadata.CopyFrom(scalar_metadata.create_summary_metadata(display_name=tag, description=""))
        for tag, shape in histogram_shapes:
            value = summary.value.add(tag=tag)
            value.tensor.dtype = types_pb2.DT_DOUBLE
            value.tensor.tensor_shape.CopyFrom(_shape(*shape))
            if tag not in self._seen:
                value.metadata.CopyFrom(histogram_metadata.create_summary_metadata(display_name=tag, description=""))
        if image:
            value = summary.value.add(tag="depth_profile")
            value.tensor.dtype = types_pb2.DT_STRING
            value.tensor.tensor_shape.CopyFrom(_shape(3))
            if "depth_profile" not in self._seen:
                value.metadata.CopyFrom(
                    image_metadata.create_summary_metadata(
                        display_name="depth_profile", description=IMAGE_DESCRIPTION, converted_to_tensor=True
                    )
                )
        new = set(scalar_tags) | {t for t, _ in histogram_shapes} | ({"depth_profile"} if image else set())
        if new - self._seen:  # the next summary leaves the metadata out
            self._seen |= new
            self._key = None
        else:
            self._key, self._cached = key, summary
        return summary

    def write_record(self, record, image=True, wall_time=None, step=None, rows=None):
        """Appends one event with every value of `record`.

        Args:
            record: One record (`record.Layout.record`).
            image: Whether to add the `depth_profile` picture.
            wall_time: The event's time; defaults to now.
            step: The event's step; defaults to the record's `step`.
            rows: The picture's rows (`plots.depth_rows`), or `None` to
                derive them from the record.
        """
        scalar_values = scalars(record)
        hists = histograms(record)
        tables = [
            np.stack([h["edges"][:-1], h["edges"][1:], h["counts"].astype(np.float64)], axis=-1)
            for _, h in hists
        ]
        image = bool(image and record["layers"])
        summary = self._summary(
            tuple(t for t, _ in scalar_values), tuple((t, r.shape) for (t, _), r in zip(hists, tables)), image
        )
        values = summary.value
        for k, (_, v) in enumerate(scalar_values):
            values[k].tensor.float_val[0] = v
        n = len(scalar_values)
        for k, r in enumerate(tables):
            values[n + k].tensor.tensor_content = r.tobytes()
        if image:
            _fill_image(values[n + len(tables)].tensor, record, rows)
        self._write(summary, record["step"] if step is None else step, wall_time)

    def write_image(self, record, step=None, rows=None, wall_time=None):
        """Appends one event with only `record`'s picture (arguments as for
        `write_record`)."""
        if not record["layers"]:
            return
        summary = self._summary((), (), True)
        _fill_image(summary.value[0].tensor, record, rows)
        self._write(summary, record["step"] if step is None else step, wall_time)

    def _write(self, summary, step, wall_time, flush=False):
        """Appends one event; flushes when `flush` or `flush_secs` passed."""
        event = event_pb2.Event(
            wall_time=time.time() if wall_time is None else float(wall_time),
            step=int(step),
            summary=summary,
        )
        self._writer.write(event.SerializeToString())
        if flush or time.monotonic() - self._flushed >= self.flush_secs:
            self.flush()

    def write_text(self, tag, text, step, description="", wall_time=None):
        """Appends one event with a text summary (Markdown) at `step`."""
        summary = summary_pb2.Summary()
        value = summary.value.add(tag=tag)
        value.tensor.dtype = types_pb2.DT_STRING
        value.tensor.tensor_shape.CopyFrom(_shape())
        value.tensor.string_val.append(text.encode("utf-8"))
        if tag not in self._seen:
            self._seen.add(tag)
            value.metadata.CopyFrom(text_metadata.create_summary_metadata(display_name=tag, description=description))
        self._write(summary, step, wall_time, flush=True)

    def flush(self):
        self._writer.flush()
        self._flushed = time.monotonic()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _fill_image(tensor, record, rows):
    """Sets an image tensor (`[width, height, png]`) to `record`'s picture."""
    picture = plots.depth_profile(record, rows)
    height, width = picture.shape
    del tensor.string_val[:]
    tensor.string_val.extend([str(width).encode(), str(height).encode(), png(picture, plots.PALETTE)])


def _chunk(kind, data):
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data))
    )


def png(image, palette=None):
    """PNG bytes of a `uint8` RGB array `[height, width, 3]`, or of palette
    indices `[height, width]` with `palette` (`uint8`, `[colours, 3]`).

    Written directly with `zlib` (no row filters, fast compression): a
    third of the time Pillow takes for the monitor's small pictures.
    """
    image = np.asarray(image, np.uint8)
    height, width = image.shape[:2]
    rows = image.reshape(height, -1)
    raw = np.zeros((height, rows.shape[1] + 1), np.uint8)  # filter 0 per row
    raw[:, 1:] = rows
    colour = 2 if palette is None else 3
    out = [
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)),
    ]
    if palette is not None:
        out.append(_chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes()))
    out.append(_chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)
