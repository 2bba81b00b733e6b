"""`python -m api` (what `onnxvec serve` runs): the OpenAI-compatible API under uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from api.app import create_app
from api.server import server_config
from onnxvec.config import get_settings


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="onnxvec serve", description=__doc__)
    parser.add_argument("--host", default=settings.api_host, help="address to bind (default: ONNXVEC_API_HOST)")
    parser.add_argument("--port", type=int, default=settings.api_port, help="port (default: ONNXVEC_API_PORT)")
    args = parser.parse_args(argv)
    app = create_app(settings)
    config = server_config(
        app, settings, host=args.host, port=args.port, access_log=settings.api_access_log, log_level="info"
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
