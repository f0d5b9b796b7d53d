"""Batching, idempotent writers to PostgreSQL and Redis (setup / add / flush)."""
