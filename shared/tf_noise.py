"""TensorFlow's C++ start-up chatter, which TF_CPP_MIN_LOG_LEVEL no longer silences.

`is_noise(line)` tells such a line (absl ``I0000 ... port.cc:153] ...``, the pre-InitializeLog
warning, the CPU-instructions notice) from output a person should see. `quiet_stderr()` runs a
block with the process's stderr (file descriptor 2, where C++ writes) sent to a temporary file,
then writes back every line that is not noise.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

_NOISE = re.compile(
    r"^(?:[IWE]\d{4} [\d:.]+\s+\d+ \S+\.cc:\d+\]|WARNING: All log messages before absl|To enable the following instructions)"
)


def is_noise(line: str) -> bool:
    return bool(_NOISE.match(line))


@contextmanager
def quiet_stderr() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for raw in tmp:
                line = raw.decode("utf-8", "replace")
                if not is_noise(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
