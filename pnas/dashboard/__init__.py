"""`pnas dashboard`: a live web view of the search over the same database, read-only by
default. Pages: runs, one run, one child, workers; the same data as JSON under /api/."""

from pnas.dashboard.app import create_app

__all__ = ["create_app"]
