"""Alembic migrations for the pnas schema (`pnas db upgrade` or `alembic upgrade head`)."""
