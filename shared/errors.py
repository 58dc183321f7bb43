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


class DatasetError(ChildFailed):
    """The worker could not load the run's dataset (missing, unreadable, malformed): every
    child on that worker would fail the same way, so the search stops after a few."""

    error_class = "dataset"


class ChildRetryable(Exception):
    """Worth another attempt: a lost worker, an out-of-memory at a bad moment, a DB hiccup."""

    error_class = "retryable"


class SearchAborted(RuntimeError):
    """Fatal for the whole search: too many consecutive failures, a broken configuration."""


class SearchCancelled(RuntimeError):
    """Children of the level were cancelled (`pnas cancel`): the run stops; the same
    `pnas search` resumes it and requeues them."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (the driver's own, for a wrapped DB error)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
