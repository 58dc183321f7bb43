"""The stderr filter passes every line a person should see, the last one before exit included."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from shared.tf_noise import _pump

ROOT = Path(__file__).resolve().parents[2]


class _StopsAsTheLineIsWritten(threading.Event):
    """The race CI met: the pump's wait ends empty, then the last line is written and the
    stop is set before the pump looks at the flag."""

    def __init__(self, write_fd: int) -> None:
        super().__init__()
        self._write_fd = write_fd

    def is_set(self) -> bool:
        if not super().is_set():
            os.write(self._write_fd, b"error: the last line\n")
            self.set()
        return True


def test_a_line_written_as_the_filter_stops_is_not_dropped() -> None:
    read_fd, write_fd = os.pipe()
    out_r, out_w = os.pipe()
    try:
        _pump(read_fd, out_w, _StopsAsTheLineIsWritten(write_fd))
        os.close(out_w)
        assert os.read(out_r, 4096) == b"error: the last line\n"
    finally:
        for fd in (read_fd, write_fd, out_r):
            os.close(fd)


def test_noise_is_dropped_and_every_other_line_passes_through_a_real_process() -> None:
    script = (
        "import os\n"
        "from shared.tf_noise import quiet_stderr\n"
        "for i in range(200):\n"
        "    with quiet_stderr():\n"
        "        os.write(2, b'I0000 00:00:1700000000.000000   12 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "        os.write(2, b'line %d\\n' % i)\n"
    )
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == [f"line {i}" for i in range(200)]


def test_tensorflows_retracing_warning_is_noise_and_other_warnings_are_not() -> None:
    from shared.tf_noise import is_noise

    # as TensorFlow 2.x prints it (captured from a real run)
    assert is_noise(
        "WARNING:tensorflow:5 out of the last 5 calls to <function f at 0x7faf367b84a0> triggered tf.function "
        "retracing. Tracing is expensive and the excessive number of tracings could be due to (1) creating "
        "@tf.function repeatedly in a loop, (2) passing tensors with different shapes, (3) passing Python objects "
        "instead of tensors. For (1), please define your @tf.function outside of the loop."
    )
    assert not is_noise("WARNING:tensorflow:something else went wrong")
    assert not is_noise("error: npz file x.npz does not exist")
