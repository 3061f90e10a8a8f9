# memtrace container image (docs/deploy.md).
#
#   docker build -t memtrace .                        # installs the checkout with pip (network)
#   make wheelhouse && docker build --network=none -t memtrace .  # offline, from dist/wheelhouse
#   docker run -d -p 127.0.0.1:9100:9100 -v memtrace-data:/data memtrace        # the server
#   docker run -i --rm -v memtrace-data:/data memtrace mcp                      # MCP over stdio
#
# BASE is any image with python3 >= 3.11 and its venv module (the default is Docker's official
# slim Python image; tests build a Debian one locally, as no registry is reachable there).
# podman: add --format docker, or the HEALTHCHECK is dropped (OCI images have none).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
COPY . /src
# dist/wheelhouse (from `make wheelhouse`) when present: the wheel and every dependency, no
# network needed; otherwise pip builds the checkout and fetches the dependencies.
RUN python3 -m venv /opt/memtrace \
 && if [ -d /src/dist/wheelhouse ]; then \
      /opt/memtrace/bin/pip install --no-cache-dir --no-index --find-links /src/dist/wheelhouse memtrace-server; \
    else \
      /opt/memtrace/bin/pip install --no-cache-dir /src; \
    fi \
 && /opt/memtrace/bin/python -m pip uninstall --yes pip \
 && find /opt/memtrace -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE}
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin memtrace \
 && mkdir -p /data && chown memtrace:memtrace /data && chmod 0700 /data
COPY --from=build /opt/memtrace /opt/memtrace
COPY deploy/container/healthcheck.py /opt/memtrace/healthcheck.py
# Inside the container it listens on every interface; publish the port on the host's loopback
# (or behind a TLS proxy) unless you mean to expose it.
ENV PATH=/opt/memtrace/bin:$PATH \
    MEMTRACE_DATA_DIR=/data \
    MEMTRACE_SERVER_HOST=0.0.0.0 \
    MEMTRACE_SERVER_PORT=9100 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER memtrace
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9100
# GET /health with the image's python (the base has no curl); `mcp` containers count as healthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "/opt/memtrace/healthcheck.py"]
# SIGTERM stops both commands gracefully, also as PID 1 (no --init needed).
ENTRYPOINT ["memtrace"]
CMD ["serve"]
