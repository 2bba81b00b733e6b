"""Semantic search: the one path from a text query to ranked chunks."""
