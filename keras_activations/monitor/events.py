"""TensorBoard event files written fast from the host.

A record writes the same tags every time, with new numbers. So each tag's
serialized `Summary.Value` is built once, with protocol buffers, as a byte
template; the templates are joined once per set of tags, and the records
that hold the same set get their numbers copied into copies of the joined
template with one NumPy assignment for all of them: well under a
microsecond per value, against tens of microseconds for a protocol buffer
or a `tf.summary` op per value.
Plugin metadata goes only with a tag's first value in a file (all that
TensorBoard reads). Files are appended with TensorFlow's native
`TFRecordWriter` (an event file is a TFRecord file; TensorBoard's own
`EventFileWriter` computes the checksums in pure Python, about 3 ms for a
20 kB record).

Scalars are float32 tensors (the scalar plugin's format), histograms
`[k, 3]` float64 tensors of `[left edge, right edge, count]` rows (the
histogram plugin's TF2 format) and images `[width, height, png]` strings.
"""

import functools
import os
import socket
import struct
import time
import zlib

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.proto import tensor_pb2
from tensorboard.compat.proto import tensor_shape_pb2
from tensorboard.compat.proto import types_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

SUFFIX = ".gradient_monitor"
IMAGE_DESCRIPTION = (
    "Gradient norm (log scale), dead fraction and activation mean against "
    "layer depth (input at the left)."
)
_FILES = 0  # files opened by this process (part of the file name)


def _shape(*dims):
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
    )


def _framed(tag, tensor, metadata):
    """A `Summary.Value` serialized with its field header, as it appears
    inside a serialized `Summary`."""
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if metadata is not None:
        value.metadata.CopyFrom(metadata)
    return summary_pb2.Summary(value=[value]).SerializeToString()


@functools.lru_cache(maxsize=None)
def _marker(size, seed):
    """`size` pseudo-random bytes (the same for a `seed`): a payload that
    no header byte sequence repeats. Cached: a `RandomState` costs about
    0.1 ms to make, which was most of a new tag's template."""
    return np.random.RandomState(seed).bytes(size)


def _template(tag, make_tensor, payload_size, metadata):
    """`(bytes, offset)`: the framed value with a payload that is found by
    a unique marker, so numbers can be copied in at `offset`."""
    for seed in range(8):
        marker = _marker(payload_size, seed)
        framed = _framed(tag, make_tensor(marker), metadata)
        if framed.count(marker) == 1:
            return bytearray(framed), framed.index(marker)
    raise RuntimeError(f"GradientMonitor: cannot template tag {tag!r}")


def _scalar_tensor(payload):
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=_shape(),
        float_val=[struct.unpack("<f", payload)[0]],
    )


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Encoder:
    """Serialized `Summary.Value`s of scalars, histograms and images.

    `seen` (a set of tags) decides whether a value carries its plugin
    metadata: only the first value of a tag in a file does. Scalars and
    histograms are encoded a set of tags at a time, for one record or for
    several: the set's joined template is cached by its tags, and the
    numbers of every record that holds the set are copied in with one NumPy
    assignment.
    """

    def __init__(self):
        self._cache = {}  # joined templates by (kind, tags, fresh)
        self._tags = {}  # one tag's framed template by (kind, tag, first)

    def _batch(self, kind, tags, seen, size, make):
        """`(template, offsets)` of a set of tags: the joined framed values
        of `tags` (a tuple) as a `uint8` array, and where their payloads
        (`size` bytes each) start, in tag order. `make(tag, first)` builds
        one tag's `_template`."""
        fresh = None
        if not seen.issuperset(tags):
            fresh = tuple(tag not in seen for tag in tags)
            seen.update(tags)
        key = (kind, tags, fresh)
        entry = self._cache.get(key)
        if entry is None:
            if len(self._cache) >= 64:  # records whose tags keep changing
                self._cache.clear()
            if len(self._tags) >= 4096:
                self._tags.clear()
            chunks, offsets, at = [], [], 0
            for k, tag in enumerate(tags):
                first = fresh is not None and fresh[k]
                one = self._tags.get((kind, tag, first))
                if one is None:
                    framed, offset = make(tag, first)
                    one = self._tags[(kind, tag, first)] = (bytes(framed), offset)
                framed, offset = one
                chunks.append(framed)
                offsets.append(at + offset)
                at += len(framed)
            template = np.frombuffer(b"".join(chunks), np.uint8).copy()
            entry = self._cache[key] = (template, np.array(offsets, np.int64))
        return entry

    @staticmethod
    def _fill(template, offsets, payload):
        """`[records, template bytes]`: copies of `template` with
        `payload[i, k]` (`[records, tags, size]` bytes) at `offsets[k]`."""
        b, _, size = payload.shape
        buf = np.empty((b, template.size), np.uint8)
        buf[:] = template
        if size >= 16:  # a slice per tag (histograms)
            for k, offset in enumerate(offsets):
                buf[:, offset : offset + size] = payload[:, k]
        else:  # one assignment (scalars)
            index = (offsets[:, None] + np.arange(size)).reshape(-1)
            buf[:, index] = payload.reshape(b, -1)
        return buf

    def _rows(self, kind, tags, payload, present, seen, make):
        """One framed batch per record: record `i` holds `payload[i, k]`
        (`size` bytes) under `tags[k]` where `present[i, k]`.

        Records are encoded together by their set of tags, each set's
        joined template filled for all its records with one assignment. A
        record that holds a tag's first value in the file (the one that
        carries metadata) is encoded alone, in record order.
        """
        b, n, size = payload.shape
        out = [None] * b
        if not b:
            return out
        known = np.array([tag in seen for tag in tags], bool)
        before = np.logical_or.accumulate(present, axis=0)
        prior = np.concatenate([known[None], known | before[:-1]])
        fresh = (present & ~prior).any(axis=1)
        names = np.array(tags, object)
        for i in np.flatnonzero(fresh):  # a few records in a whole fit
            here = present[i]
            entry = self._batch(kind, tuple(names[here]), seen, size, make)
            out[i] = self._fill(*entry, payload[i : i + 1, here])[0].tobytes()
        rest = np.flatnonzero(~fresh)
        if not rest.size:
            return out
        if (present[rest] == present[rest[0]]).all():  # the usual case
            groups = [(present[rest[0]], rest)]
        else:
            sets, which = np.unique(present[rest], axis=0, return_inverse=True)
            which = which.reshape(-1)
            groups = [(here, rest[which == g]) for g, here in enumerate(sets)]
        for here, members in groups:
            entry = self._batch(kind, tuple(names[here]), seen, size, make)
            part = payload[members] if members.size < b else payload
            if not here.all():
                part = part[:, here]
            for i, row in zip(members, self._fill(*entry, part)):
                out[i] = row.tobytes()
        return out

    def scalar_rows(self, tags, values, present, seen):
        """Framed float32 scalars of several records, one `bytes` per
        record: `values[i, k]` under `tags[k]` (a tuple) where
        `present[i, k]`."""

        def make(tag, first):
            metadata = None
            if first:
                metadata = scalar_metadata.create_summary_metadata(
                    display_name=tag, description=""
                )
            return _template(tag, _scalar_tensor, 4, metadata)

        values = np.ascontiguousarray(values, "<f4")
        payload = values.view(np.uint8).reshape(values.shape + (4,))
        return self._rows("scalar", tags, payload, np.asarray(present, bool), seen, make)

    def scalars(self, tags, values, seen):
        """Framed float32 scalars of one record: `values[k]` under `tags[k]`
        (a tuple)."""
        values = np.asarray(values, np.float64).reshape(1, -1)
        return self.scalar_rows(tags, values, np.ones(values.shape, bool), seen)[0]

    def histogram_rows(self, tags, rows, seen):
        """Framed histograms of several records, one `bytes` per record:
        `rows[i, k]` (a `[records, n, k, 3]` array of `[left edge, right
        edge, count]` rows) under `tags[k]` (a tuple)."""
        rows = np.ascontiguousarray(rows, "<f8")
        b, n, k = rows.shape[:3]

        def make(tag, first):
            metadata = None
            if first:
                metadata = histogram_metadata.create_summary_metadata(
                    display_name=tag, description=""
                )

            def tensor(payload):
                return tensor_pb2.TensorProto(
                    dtype=types_pb2.DT_DOUBLE,
                    tensor_shape=_shape(k, 3),
                    tensor_content=payload,
                )

            return _template(tag, tensor, k * 24, metadata)

        payload = rows.view(np.uint8).reshape(b, n, k * 24)
        present = np.ones((b, n), bool)
        return self._rows(("histogram", k), tags, payload, present, seen, make)

    def histograms(self, tags, rows, seen):
        """Framed histograms of one record: `rows[k]` (a `[n, k, 3]` array
        of `[left edge, right edge, count]` rows) under `tags[k]` (a
        tuple)."""
        return self.histogram_rows(tags, np.asarray(rows)[None], seen)[0]

    def image(self, tag, image, seen, palette=None):
        """`image`: a `uint8` array `[height, width, 3]`, or with `palette`
        (a `uint8` array `[colours, 3]`) one of indices `[height, width]`
        into it (a palette PNG: smaller, and faster to encode)."""
        first = tag not in seen
        seen.add(tag)
        metadata = None
        if first:
            metadata = image_metadata.create_summary_metadata(
                display_name=tag,
                description=IMAGE_DESCRIPTION,
                converted_to_tensor=True,
            )
        height, width = image.shape[:2]
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING,
            tensor_shape=_shape(3),
            string_val=[str(width).encode(), str(height).encode(), png(image, palette)],
        )
        return _framed(tag, tensor, metadata)


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


class EventFile:
    """A new event file in `log_dir`, appended one record at a time.

    Args:
        log_dir: Existing, writable directory.
        flush_secs: Flush when this many seconds passed since the last
            flush (checked at each write), and at `close`.
    """

    def __init__(self, log_dir, flush_secs=2.0):
        import tensorflow as tf

        global _FILES
        _FILES += 1
        self.path = os.path.join(
            log_dir,
            "events.out.tfevents.%010d.%s.%s.%s%s"
            % (time.time(), socket.gethostname(), os.getpid(), _FILES, SUFFIX),
        )
        self.flush_secs = float(flush_secs)
        self.seen = set()
        self._writer = tf.io.TFRecordWriter(self.path)
        first = event_pb2.Event(
            wall_time=time.time(),
            file_version="brain.Event:2",
            source_metadata=event_pb2.SourceMetadata(
                writer="keras_activations.GradientMonitor"
            ),
        )
        self._writer.write(first.SerializeToString())
        self.flush()

    def write(self, step, values, wall_time=None):
        """Appends one event holding the framed `values` (bytes), at
        `wall_time` (seconds since the epoch; default now)."""
        summary = b"".join(values)
        if wall_time is None:
            wall_time = time.time()
        head = event_pb2.Event(wall_time=float(wall_time), step=int(step))
        # Field 5 (summary), length-delimited: parsers merge the fields.
        event = head.SerializeToString() + b"\x2a" + _varint(len(summary)) + summary
        self._writer.write(event)
        if time.monotonic() - self._flushed >= self.flush_secs:
            self.flush()

    def flush(self):
        self._writer.flush()
        self._flushed = time.monotonic()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
