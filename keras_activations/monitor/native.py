"""The monitor's compiled kernels: built once, cached, optional.

`kernels.cc` holds two TensorFlow ops for the monitor's work on a CPU:
`KerasActivationsHistograms` counts the snapshot histograms of many
tensors, about 2x faster than `tf.histogram_fixed_width` with its range;
`KerasActivationsPositiveCounts` makes a ReLU-family site's per-step
figures (per-unit counts of positive outputs, and the count, sum and sum of
squares) in one pass over its outputs, where TensorFlow's ops take four.
TensorFlow ships the headers to build them against, so the first
`GradientMonitor` that needs them compiles them with the machine's C++
compiler (about 15 s, once) into a cache directory, keyed by the source,
TensorFlow's version and build flags, the compiler and the CPU; later
processes load them from there. `keras_activations.monitor.native.main()`
builds them ahead of time (`make` does, after installing).

Without a compiler, or when the build or the load fails, the monitor logs
why, once, and uses TensorFlow's ops: the same figures, slower. Set
`KERAS_ACTIVATIONS_NATIVE=0` to never use the kernels, and
`KERAS_ACTIVATIONS_CACHE` to choose the cache directory (default
`$XDG_CACHE_HOME/keras_activations`, or `~/.cache/keras_activations`; the
temporary directory when neither can be written).

The kernels run on the CPU only: with a GPU visible, or under XLA
(`jit_compile=True`), the monitor uses TensorFlow's own ops.
"""

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels.cc")
_LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()
_UNSET = object()
_module = _UNSET
# Why the kernel is not used (`None` while it is, or before the first try).
reason = None


def enabled():
    """Whether the environment allows the kernel (`KERAS_ACTIVATIONS_NATIVE`)."""
    value = os.environ.get("KERAS_ACTIVATIONS_NATIVE", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def _writable(path):
    """Whether `path`, or the nearest directory above it that exists, can
    be written to."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.access(path, os.W_OK)


def cache_dir():
    """The directory that holds built kernels: `$KERAS_ACTIVATIONS_CACHE`,
    else `keras_activations` in the user's cache directory, else (when
    that can't be written) in the temporary directory."""
    path = os.environ.get("KERAS_ACTIVATIONS_CACHE")
    if path:
        return path
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    path = os.path.join(base, "keras_activations")
    if _writable(path):
        return path
    user = getattr(os, "getuid", lambda: "user")()
    return os.path.join(tempfile.gettempdir(), f"keras_activations-{user}")


def _compiler():
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_flags():
    """The CPU's feature flags (Linux), for `-march=native` and the key."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _command(cxx, source, out, native_arch):
    import tensorflow as tf

    arch = ["-march=native"] if native_arch else []
    return (
        [cxx, "-shared", "-fPIC", "-O3", "-w"]
        + arch
        + [source, "-o", out]
        + tf.sysconfig.get_compile_flags()
        + tf.sysconfig.get_link_flags()
    )


def library_path(cxx=None):
    """Where the kernel built for this source, TensorFlow, compiler and CPU
    lies (or would lie) in `cache_dir()`."""
    import tensorflow as tf

    cxx = cxx or _compiler() or "c++"
    key = hashlib.sha256()
    with open(_SOURCE, "rb") as f:
        key.update(f.read())
    for part in (
        tf.__version__,
        " ".join(tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()),
        cxx,
        platform.machine(),
        _cpu_flags() or "",
    ):
        key.update(b"\0" + part.encode())
    return os.path.join(cache_dir(), f"kernels-{key.hexdigest()[:16]}.so")


def build(timeout=600):
    """Compiles the kernel into `library_path()` unless it is there.

    Returns:
        The library's path.

    Raises:
        RuntimeError: No C++ compiler, or the compiler failed (its output
            is in the message).
    """
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (looked for $CXX, g++, c++, clang++)")
    path = library_path(cxx)
    if os.path.exists(path):
        return path
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    # Built under a temporary name and renamed: another process building
    # the same kernel at once never loads a half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(fd)
    try:
        errors = []
        for native_arch in ([True, False] if _cpu_flags() else [False]):
            run = subprocess.run(
                _command(cxx, _SOURCE, tmp, native_arch),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if run.returncode == 0:
                os.replace(tmp, path)
                return path
            errors.append(run.stderr.strip()[-2000:])
        raise RuntimeError(f"{cxx} failed to build {_SOURCE}:\n" + errors[-1])
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load():
    """The loaded op library, or `None` (and `reason` says why) when the
    kernel is disabled or can't be built or loaded. Tries once a process."""
    global _module, reason
    if _module is not _UNSET:
        return _module
    with _LOCK:
        if _module is not _UNSET:
            return _module
        if not enabled():
            reason = "disabled by KERAS_ACTIVATIONS_NATIVE"
            _module = None
            return None
        try:
            import tensorflow as tf

            path = library_path()
            if not os.path.exists(path):
                _LOG.info("GradientMonitor: building its kernels (once)")
                path = build()
            _module = tf.load_op_library(path)
        except Exception as error:  # no compiler, a failed build or load
            reason = f"{type(error).__name__}: {error}"
            _module = None
            _LOG.warning(
                "GradientMonitor: could not build its compiled kernels, so it "
                "uses TensorFlow's ops (tf.histogram_fixed_width for the "
                "histograms): the same figures, slower. %s",
                reason,
            )
        return _module


def _op(name):
    """The kernel's op `name`, or `None` where the monitor should use
    TensorFlow's ops: no kernel, or a GPU visible (the kernels run on the
    CPU only)."""
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return None
    module = load()
    return None if module is None else getattr(module, name)


def histograms_op():
    """`op(values, bins=...) -> (counts [N, bins] float64, lohi [N, 2]
    float32)` of the kernel (`kernels.cc`), or `None` (`_op`)."""
    return _op("keras_activations_histograms")


def positive_counts_op():
    """`op(outputs [outer, units, inner]) -> (counts [units], sums [4])` of
    the kernel (`kernels.cc`), or `None` (`_op`)."""
    return _op("keras_activations_positive_counts")


def main():
    """Builds the kernels ahead of time and prints the library's path."""
    if not enabled():
        print("keras_activations: the monitor's kernels are disabled (KERAS_ACTIVATIONS_NATIVE)")
        return 0
    try:
        path = build()
    except Exception as error:
        print(f"keras_activations: no compiled kernels ({error}); "
              "GradientMonitor will use TensorFlow's ops")
        return 0
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
