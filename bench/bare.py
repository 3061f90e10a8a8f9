"""The baseline of the single-remember figure: a bare FastAPI endpoint on the same uvicorn settings.

``POST /api/v1/memories`` validates the body into memtrace's own request model
(:class:`~memtrace.domain.models.MemoryCreate`, the same rules and the same pydantic work as
the real route) and returns it, answering 201. No auth, no storage, no middleware: what any
FastAPI service pays per request for HTTP, routing, validation and the response. The real
server's CPU per request is reported as a ratio of this one, measured in the same run
(bench/run.py, bench/inprocess.py), since absolute figures on a shared machine move 2x from
day to day.

    .venv/bin/python -m bench.bare --port 9199
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI

from memtrace.domain.models import MemoryCreate


def create_bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/memories", status_code=201)
    async def create(body: MemoryCreate) -> MemoryCreate:
        return body

    return app


def main() -> None:
    import uvicorn

    from http_api.serving import uvicorn_options
    from memtrace.config import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = load_settings(overrides={"server.port": args.port})
    config = uvicorn.Config(
        create_bare_app(),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        **uvicorn_options(settings),
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
