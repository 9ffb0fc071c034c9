"""Durable state of the node: the SQLite (or PostgreSQL) catalogue and the file store."""
