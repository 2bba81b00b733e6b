"""Postgres tables: collections and chunks, documents' life cycle, API keys."""
