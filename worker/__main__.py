"""`python -m worker` (what `onnxvec worker` runs): a Celery worker on the Redis broker, with the
periodic reconciler. Processes × ONNX threads never exceed the cores; the embedded Postgres and
Redis are started (or found) before the pool forks, and its processes reach them by URL."""

from __future__ import annotations

import argparse
import os

from onnxvec.config import get_settings
from onnxvec.infra import broker, embedded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="onnxvec worker", description=__doc__)
    parser.add_argument("--concurrency", type=int, help="worker processes (default: settings, else 1)")
    parser.add_argument("--beat", action=argparse.BooleanOptionalAction, default=True, help="run the reconciler")
    parser.add_argument("--loglevel", default="info")
    args = parser.parse_args(argv)
    settings = get_settings()
    processes = args.concurrency or settings.worker_concurrency or 1
    endpoints = embedded.ensure_services(settings)
    os.environ.setdefault("ONNXVEC_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    os.environ |= {"DATABASE_URL": endpoints.database_url, "REDIS_URL": endpoints.redis_url}
    get_settings.cache_clear()
    os.nice(settings.compute_niceness)  # bulk work yields the cores to the API's event loop
    from worker.tasks import app  # reads the settings just set

    command = ["worker", "--concurrency", str(processes), "--pool", "prefork", "--loglevel", args.loglevel]
    command += ["--queues", broker.QUEUE, "--without-gossip", "--without-mingle"]
    if args.beat:
        schedule = settings.home / "worker" / "beat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        command += ["--beat", "--schedule", str(schedule)]
    app.worker_main(command)


if __name__ == "__main__":
    main()
