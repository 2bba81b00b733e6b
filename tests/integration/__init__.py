"""Against the real embedded PostgreSQL + pgvector and Redis, real models and real processes."""
