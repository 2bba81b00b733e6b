"""What the rest runs on: the embedded PostgreSQL and Redis, the database engine, the broker, the CPU."""
