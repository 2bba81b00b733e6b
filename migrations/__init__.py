"""Alembic migrations of onnxvec's schema, shipped in the package so that any install can migrate."""
