"""TensorFlow's C++ start-up chatter, which TF_CPP_MIN_LOG_LEVEL no longer silences.

`is_noise(line)` tells such a line (absl ``I0000 ... port.cc:153] ...``, the pre-InitializeLog
warning, the CPU-instructions notice, ``E0000 ... failed call to cuInit``, tf.function's
``WARNING:tensorflow:5 out of the last 5 calls ... triggered tf.function retracing``) from
output a person should see. `quiet_stderr()` runs a block with the process's stderr (file descriptor 2, where
C++ writes) sent through a pipe; a thread writes every line that is not noise on to the real
stderr as it comes, so progress lines stay live. `hush_tensorflow()` sets what TensorFlow
reads at import to log less (call it before TensorFlow is imported). `python -m shared.tf_noise`
is a filter program (stdin to stderr, noise dropped) for a command that ends by exec'ing
another program (`pnas worker` becomes Celery, whose pool children import TensorFlow).
"""

from __future__ import annotations

import os
import re
import select
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_NOISE = re.compile(
    r"^(?:[IWE]\d{4} [\d:.]+\s+\d+ \S+\.cc:\d+\]|WARNING: All log messages before absl|To enable the following instructions"
    r"|\d{4}-\d\d-\d\d [\d:.]+: [IWE] (?:tensorflow|external/local_xla|external/local_tsl)/"
    # tf.function's retracing advice (Python logging): an npz dataset's odd last batch, a
    # child's first epochs; nothing a person running pnas can act on
    r"|WARNING:tensorflow:\d+ out of the last \d+ calls to .* triggered tf\.function retracing)"
)


def is_noise(line: str) -> bool:
    return bool(_NOISE.match(line))


def hush_tensorflow() -> None:
    """TensorFlow's C++ logs: fatal only; its Python absl logs: errors only. Lines printed
    before absl is initialised (the cuInit error among them) are left to `quiet_stderr`."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        from absl import logging as absl_logging
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to hush
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


def _pump(read_fd: int, out_fd: int, stop: threading.Event) -> None:
    """Copy lines from ``read_fd`` to ``out_fd``, dropping noise, until ``stop`` and drained."""
    buf = b""
    while True:
        # Read the flag before waiting: every byte written before `stop` was set is then in the
        # pipe when select looks, so a last line (an error printed just before exit) is never
        # dropped by a select that timed out a moment before it was written.
        stopping = stop.is_set()
        ready, _, _ = select.select([read_fd], [], [], 0 if stopping else 0.05)
        if not ready:
            if stopping:
                break
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            if not is_noise(raw.decode("utf-8", "replace")):
                os.write(out_fd, raw + b"\n")
    if buf and not is_noise(buf.decode("utf-8", "replace")):
        os.write(out_fd, buf)


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Filter TensorFlow's noise from file descriptor 2 while the block runs (lines pass live).

    Processes started inside the block inherit the pipe; whatever they write after the block
    ends is not read (start long-lived processes outside it)."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    stop = threading.Event()
    pump = threading.Thread(target=_pump, args=(read_fd, saved, stop), name="tf-noise", daemon=True)
    pump.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes this process's last write end of the pipe
        stop.set()
        pump.join(timeout=5)
        os.close(read_fd)
        os.close(saved)


def _filter_stdin() -> None:
    """Copy stdin to stderr line by line as lines come, without the noise."""
    for raw in sys.stdin.buffer:
        if not is_noise(raw.decode("utf-8", "replace")):
            os.write(2, raw)


if __name__ == "__main__":
    _filter_stdin()
