"""The ``--offline`` model: a local HTTP endpoint that replays a scripted conversation.

It speaks just enough of the Anthropic Messages API (``POST /v1/messages``) and of OpenAI chat
completions (``POST /v1/chat/completions``) for the real ``anthropic`` and ``openai`` clients
(and the OpenAI Agents SDK's chat-completions model) to run unchanged against it, pointed at it
with ``base_url``. Each request gets the next scripted step: text, tool calls, or both. Like the
real APIs it refuses a request that does not answer the previous step's tool calls, so the
cookbooks' tool loops are exercised for real.

Every request body is kept (``requests``) and, when ``MEMTRACE_COOKBOOK_RECORD`` names a file,
appended to it as one JSON line, so tests can check what the model was shown (system prompts).
Only for local use: it binds 127.0.0.1 and has no authentication beyond checking that a key
header is present, as the real clients always send one.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORD_ENV = "MEMTRACE_COOKBOOK_RECORD"
MAX_REQUEST_BYTES = 4 * 1024 * 1024
SESSION_PLACEHOLDER = "$SESSION"
_SESSION_RE = re.compile(r"sess_[A-Za-z0-9]+")

Json = dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A tool call the scripted model makes.

    ``arguments`` is a dict, or (OpenAI only) raw text sent as-is to simulate a model that
    emits malformed JSON. A ``"$SESSION"`` value is replaced, like a model reading its prompt,
    by the last session id (``sess_…``) that appears in the conversation so far.
    """

    name: str
    arguments: Json | str = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One scripted model turn: optional text and any number of tool calls."""

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()


class ScriptError(Exception):
    """A request the scripted model cannot answer (wrong shape, or the script ran out)."""


class ScriptedModel:
    """Hands out the steps in order and checks each request against the previous step."""

    def __init__(self, steps: Sequence[Step], record_path: Path | None = None) -> None:
        self.steps = list(steps)
        self.position = 0
        self.requests: list[Json] = []
        self.record_path = record_path
        self._pending: list[str] = []
        self._counter = 0
        self._lock = threading.Lock()

    def _record(self, api: str, body: Json) -> None:
        entry = {"api": api, "body": body}
        self.requests.append(entry)
        if self.record_path is not None:
            with self.record_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(entry) + "\n")

    def _new_conversation(self, messages: list[Any]) -> None:
        """A request without assistant turns starts a new conversation: nothing is pending
        (an agent stopped by its turn limit leaves its last tool calls unanswered)."""
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            self._pending = []

    def _next_step(self) -> Step:
        if self.position >= len(self.steps):
            raise ScriptError(f"the offline script has only {len(self.steps)} steps")
        step = self.steps[self.position]
        self.position += 1
        return step

    def _new_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:06d}"

    @staticmethod
    def _arguments(call: ToolCall, conversation: str) -> Json | str:
        if isinstance(call.arguments, str):
            return call.arguments
        sessions = _SESSION_RE.findall(conversation)
        return {
            key: (sessions[-1] if value == SESSION_PLACEHOLDER and sessions else value)
            for key, value in call.arguments.items()
        }

    # -- Anthropic Messages API ------------------------------------------------------------

    def anthropic(self, body: Json) -> Json:
        with self._lock:
            self._record("anthropic", body)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise ScriptError("messages: a non-empty list is required")
            if not isinstance(body.get("max_tokens"), int):
                raise ScriptError("max_tokens: required")
            self._new_conversation(messages)
            answered = {
                block.get("tool_use_id")
                for block in _blocks(messages[-1])
                if block.get("type") == "tool_result"
            }
            missing = [call_id for call_id in self._pending if call_id not in answered]
            if missing:
                raise ScriptError(f"messages: tool_use ids without a tool_result: {missing}")
            step = self._next_step()
            conversation = json.dumps(body)
            content: list[Json] = []
            if step.text:
                content.append({"type": "text", "text": step.text})
            self._pending = []
            for call in step.tool_calls:
                arguments = self._arguments(call, conversation)
                if isinstance(arguments, str):
                    raise ScriptError("Anthropic tool_use input is always an object")
                call_id = self._new_id("toolu_offline")
                self._pending.append(call_id)
                content.append(
                    {"type": "tool_use", "id": call_id, "name": call.name, "input": arguments}
                )
            return {
                "id": self._new_id("msg_offline"),
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "offline"),
                "content": content,
                "stop_reason": "tool_use" if step.tool_calls else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": len(conversation) // 4, "output_tokens": 16},
            }

    # -- OpenAI chat completions -----------------------------------------------------------

    def openai_chat(self, body: Json) -> Json:
        with self._lock:
            self._record("openai-chat", body)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise ScriptError("messages: a non-empty list is required")
            if body.get("stream"):
                raise ScriptError("stream: the offline model does not stream")
            self._new_conversation(messages)
            answered = {
                m.get("tool_call_id")
                for m in messages
                if isinstance(m, dict) and m.get("role") == "tool"
            }
            missing = [call_id for call_id in self._pending if call_id not in answered]
            if missing:
                raise ScriptError(f"messages: tool_calls without a tool message: {missing}")
            step = self._next_step()
            conversation = json.dumps(body)
            tool_calls: list[Json] = []
            for call in step.tool_calls:
                arguments = self._arguments(call, conversation)
                text = arguments if isinstance(arguments, str) else json.dumps(arguments)
                tool_calls.append(
                    {
                        "id": self._new_id("call_offline"),
                        "type": "function",
                        "function": {"name": call.name, "arguments": text},
                    }
                )
            self._pending = [c["id"] for c in tool_calls]
            message: Json = {"role": "assistant", "content": step.text or None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            prompt_tokens = len(conversation) // 4
            return {
                "id": self._new_id("chatcmpl-offline"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "offline"),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if tool_calls else "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": 16,
                    "total_tokens": prompt_tokens + 16,
                },
            }


def _blocks(message: Any) -> list[Json]:
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return []
    return [block for block in message["content"] if isinstance(block, dict)]


def system_prompts(requests: Sequence[Json]) -> list[str]:
    """The system prompt of each recorded request (Anthropic ``system`` or OpenAI system role)."""
    prompts = []
    for entry in requests:
        body = entry["body"]
        if entry["api"] == "anthropic":
            system = body.get("system", "")
            if isinstance(system, list):
                system = "\n".join(block.get("text", "") for block in system)
            prompts.append(str(system))
        else:
            prompts.append(
                "\n".join(
                    str(m.get("content", ""))
                    for m in body.get("messages", [])
                    if m.get("role") in ("system", "developer")
                )
            )
    return prompts


def _handler(model: ScriptedModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: the script prints
            pass

        def _reply(self, status: int, payload: Json) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, anthropic: bool) -> None:
            if anthropic:
                payload: Json = {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": message},
                }
            else:
                payload = {"error": {"message": message, "type": "invalid_request_error"}}
            self._reply(status, payload)

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            anthropic = path.endswith("/messages")
            if not (anthropic or path.endswith("/chat/completions")):
                self._error(404, f"the offline model does not serve {path}", anthropic)
                return
            if not (self.headers.get("x-api-key") or self.headers.get("authorization")):
                self._error(401, "missing API key header", anthropic)
                return
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_REQUEST_BYTES:
                self._error(413, f"content-length must be 0 to {MAX_REQUEST_BYTES}", anthropic)
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ScriptError("the body must be a JSON object")
                reply = model.anthropic(body) if anthropic else model.openai_chat(body)
            except (ScriptError, json.JSONDecodeError) as exc:
                self._error(HTTPStatus.BAD_REQUEST, str(exc), anthropic)
                return
            self._reply(200, reply)

    return Handler


class OfflineEndpoint:
    """The scripted model served on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, steps: Sequence[Step], record_path: Path | None = None) -> None:
        if record_path is None and os.environ.get(RECORD_ENV):
            record_path = Path(os.environ[RECORD_ENV])
        self.model = ScriptedModel(steps, record_path)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.model))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> OfflineEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
