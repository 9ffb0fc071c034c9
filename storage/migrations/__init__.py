"""Alembic migrations of the catalogue, shipped inside the package (see storage.migrate)."""
