"""The three kinds of failure, plus the one for a user's mistake.

A child ends in `ChildFailed` (final for this child), `ChildRetryable` (infrastructure;
try again while attempts remain) or, for the whole search, `SearchAborted`.
`UserError` carries one line for a person who typed something wrong: the CLI prints it
without a stack trace.
"""


class UserError(ValueError):
    """Bad input from a person: one line saying what is wrong and how to fix it."""


class ChildFailed(Exception):
    """Final for this child: the architecture cannot be built, the loss went NaN."""

    error_class = "final"


class ChildRetryable(Exception):
    """Worth another attempt: a lost worker, an out-of-memory at a bad moment, a DB hiccup."""

    error_class = "retryable"


class SearchAborted(RuntimeError):
    """Fatal for the whole search: too many consecutive failures, a broken configuration."""


class ChildOutOfMemory(ChildRetryable):
    """Retryable: the child ran out of (GPU) memory; its retry gets more room (worker/gpu_share.py)."""
