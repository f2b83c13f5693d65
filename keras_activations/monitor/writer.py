"""The monitor's event files on disk: checks, listing, truncation.

Events are written by `events.EventFile`. The monitor's event files end in `.gradient_monitor`, so they can share a
directory with other writers (e.g. `keras.callbacks.TensorBoard`) and
`truncate_after` touches only them.
"""

import glob
import os
import tempfile

from keras_activations.monitor.events import SUFFIX


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


def files(log_dir):
    """The monitor's event files in `log_dir`, oldest first."""
    return sorted(glob.glob(os.path.join(log_dir, f"*{SUFFIX}")))


def truncate_after(log_dir, step):
    """Removes summaries with a step above `step` from the monitor's event
    files in `log_dir` (a resumed fit writes those steps again)."""
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    for path in files(log_dir):
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
