"""Where documents come from: files and stdin (and, later, tables)."""
