"""Durable analysis jobs: the queue in :mod:`queue` (rows + events), the worker processes in :mod:`worker`."""
