"""Pure logic: no services, no models; seconds (`make test-fast`)."""
