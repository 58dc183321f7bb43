"""The vocabulary both sides speak: search space, cell encoding, jobs, settings and the store.

Imports no Celery and starts no process.
"""
