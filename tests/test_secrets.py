"""Secrets never leak: a full flow with debug logging, then every log line, error body,
``/health``, ``/metrics`` and CLI output is searched for API keys and the master key."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import pytest

from tests.helpers import KEY_RE, ServerProcess, run_cli, wait_until

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

MEM = "/api/v1/memories"
PRIVATE = "private-content-7f3a9 of a patient record"


def _fragments(secret: str) -> list[str]:
    """The secret and long pieces of it (a leak of half a key is still a leak)."""
    body = secret.removeprefix("mtk_")
    return [secret, body[:20], body[-20:]]


def test_no_secret_in_logs_errors_health_metrics_or_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    master = base64.b64encode(os.urandom(32)).decode()
    env = {"MEMTRACE_LOG_LEVEL": "DEBUG", "MEMTRACE_MASTER_KEY": master}
    server = ServerProcess(data, env=env).start()
    cli_outputs: list[str] = []
    seen: list[str] = []  # every body and header the clients received
    session_ids: list[str] = []
    try:
        admin = server.admin_key
        assert admin
        org = run_cli("org", "create", "secretive", data_dir=data, env=env)
        cli_outputs += [org.stdout, org.stderr]
        made = run_cli(
            "key", "create", "--org", "secretive", "--name", "ops", data_dir=data, env=env
        )
        user_key = made.stdout.strip()
        assert KEY_RE.fullmatch(user_key)
        cli_outputs.append(made.stderr)  # stdout is the key itself, by design
        readonly = run_cli(
            "key",
            "create",
            "--org",
            "secretive",
            "--name",
            "ro",
            "--permissions",
            "read",
            data_dir=data,
            env=env,
        ).stdout.strip()
        listed = run_cli("key", "list", "--org", "secretive", data_dir=data, env=env)
        cli_outputs += [listed.stdout, listed.stderr]
        wrong = user_key[:-4] + ("AAAA" if not user_key.endswith("AAAA") else "BBBB")

        def record(response: httpx.Response) -> httpx.Response:
            seen.append(response.text)
            seen.append(str(dict(response.headers)))
            return response

        with httpx.Client(base_url=server.url, timeout=30) as client:

            def as_key(key: str) -> dict[str, str]:
                return {"x-api-key": key}

            wait_until(
                lambda: client.get(MEM, headers=as_key(user_key)).status_code == 200, timeout=10
            )
            record(
                client.post(MEM, headers=as_key(user_key), json={"agent_id": "a", "content": "hi"})
            )
            record(
                client.post(MEM, headers=as_key(user_key), json={"agent_id": "a", "content": "hi"})
            )
            record(
                client.post(MEM, headers=as_key(readonly), json={"agent_id": "a", "content": "x"})
            )
            record(client.get(MEM, headers=as_key(wrong)))
            record(client.get(MEM, headers={"authorization": f"Bearer {wrong}"}))
            record(client.get(MEM, headers={"authorization": f"Basic {user_key}"}))
            record(client.get(MEM, headers=as_key(user_key), params={"since": user_key}))
            record(client.post(MEM, headers=as_key(user_key), content=user_key.encode()))
            # A key stored as data is data (returned to its org); only the log must not show it.
            client.post(MEM, headers=as_key(user_key), json={"agent_id": user_key, "content": "x"})
            record(client.get(f"{MEM}/{user_key}", headers=as_key(user_key)))
            record(client.get("/health"))
            record(client.get("/ready"))
            record(client.get("/metrics"))
            # Memory contents and SSE session ids are not for the log either, even at DEBUG
            # (the MCP SDK logs every message it receives at DEBUG).
            client.post(MEM, headers=as_key(user_key), json={"agent_id": "a", "content": PRIVATE})
            with client.stream("GET", "/sse", headers=as_key(user_key)) as stream:
                lines = stream.iter_lines()
                endpoint = next(line for line in lines if line.startswith("data:"))[5:].strip()
                session_ids.append(endpoint.partition("session_id=")[2])
                call = {"agent_id": "a", "content": PRIVATE + " over MCP"}
                message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
                message["params"] = {"name": "memtrace_remember", "arguments": call}
                client.post(endpoint, headers=as_key(user_key), json=message)
                client.post(endpoint, headers=as_key(readonly), json=message)  # not its session
        key_id = next(
            line.split("\t")[0]
            for line in listed.stdout.splitlines()
            if line.split("\t")[1] == "ops"
        )
        revoked = run_cli("key", "revoke", key_id, data_dir=data, env=env)
        cli_outputs += [revoked.stdout, revoked.stderr]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            wait_until(lambda: client.get(MEM, headers={"x-api-key": user_key}).status_code == 401)
            record(client.get(MEM, headers={"x-api-key": user_key}))
        server.stop()
        log = server.log_path.read_text()
    finally:
        server.stop()

    assert '"GET /api/v1/memories' in log, "the flow must run with debug logging (access log)"
    assert PRIVATE not in log, "a memory's content is in the server log"
    assert session_ids[0] and session_ids[0] not in log, "an SSE session id is in the server log"
    # The bootstrap admin key is printed once, in the first-run banner, by design.
    assert log.count(admin) == 1
    banner_free = log.replace(admin, "<bootstrap banner>")
    places = {
        "server log": banner_free,
        "responses": "\n".join(seen),
        "CLI": "\n".join(cli_outputs),
    }
    for place, text in places.items():
        for secret in (user_key, readonly, wrong, admin, master):
            for fragment in _fragments(secret):
                assert fragment not in text, f"a secret fragment leaked into the {place}"
        assert not KEY_RE.search(text), f"something shaped like an API key is in the {place}"
