"""A child's log tails, one labelled section per attempt, kept in its one `log_tail` column.

Each attempt that ends (failed, succeeded, cancelled) appends its own tail under a header
line ``=== attempt 2: succeeded (accuracy 0.9123) ===``, so a child that failed and then
succeeded shows both, each under its own label, and never the old traceback as if it were
the last word. `sections` reads them back; a tail written before sections existed is one
unlabelled section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KEEP_ATTEMPTS = 5  # sections kept: a child retried by hand many times stays a few KB per attempt
_HEADER = re.compile(r"^=== attempt (\d+): (.*) ===$", re.M)


@dataclass(frozen=True)
class AttemptLog:
    attempt: int | None  # None: a tail stored before attempts were labelled
    outcome: str  # "failed (final: ValueError: ...)", "succeeded (accuracy 0.9123)", ...
    text: str

    @property
    def label(self) -> str:
        return f"attempt {self.attempt}: {self.outcome}" if self.attempt is not None else self.outcome


def sections(tail: str | None) -> list[AttemptLog]:
    """The attempts' tails in the order they ended (oldest first)."""
    if not tail:
        return []
    heads = list(_HEADER.finditer(tail))
    out = []
    before = tail[: heads[0].start()] if heads else tail
    if before.strip():
        out.append(AttemptLog(None, "an earlier attempt", before.strip("\n")))
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(tail)
        out.append(AttemptLog(int(m.group(1)), m.group(2), tail[m.end() : end].strip("\n")))
    return out


def appended(previous: str | None, *, attempt: int, outcome: str, text: str | None) -> str:
    """``previous`` with this attempt's section added (the oldest dropped past `KEEP_ATTEMPTS`)."""
    outcome = " ".join(outcome.split())[:300]  # one header line, whatever the message held
    kept = [s for s in sections(previous) if s.attempt != attempt][-(KEEP_ATTEMPTS - 1) :]
    kept.append(AttemptLog(attempt, outcome, (text or "").strip("\n")))
    parts = []
    for s in kept:
        head = f"=== attempt {s.attempt}: {s.outcome} ===" if s.attempt is not None else ""
        parts.append("\n".join(p for p in (head, s.text) if p))
    return "\n".join(parts) + "\n"
