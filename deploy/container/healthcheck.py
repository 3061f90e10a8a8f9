"""The container image's HEALTHCHECK (see the Dockerfile): GET /health of the server in this
container. A container running the MCP stdio server (`docker run -i IMAGE mcp`) serves no HTTP;
it is healthy while it runs. Runs on the base image's python3, standard library only."""

import os
import sys
import urllib.request
from pathlib import Path

args = Path("/proc/1/cmdline").read_bytes().split(b"\0")  # the container's main process
names = {os.path.basename(arg) for arg in args}
if b"memtrace-mcp" in names or (b"mcp" in args and b"--transport" not in args):
    sys.exit(0)
port = os.environ.get("MEMTRACE_SERVER_PORT", "9100")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as response:
        healthy = response.status == 200
except OSError:
    healthy = False
sys.exit(0 if healthy else 1)
