"""The memtrace MCP server: the tools of :mod:`memtrace.tools` rendered for mcp 2.x.

Nothing about a tool is defined here: names, descriptions, argument schemas, validation and
handlers all come from ``memtrace.tools``. This module only decides where a call's
:class:`~memtrace.tools.MemoryOps` comes from (one fixed set for stdio, the caller's API key on
HTTP) and maps :class:`~memtrace.domain.errors.MemtraceError` to ``is_error`` results, once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import ConfigDict

from memtrace import __version__
from memtrace.domain.errors import MemtraceError
from memtrace.domain.redact import redact
from memtrace.tools import TOOLS, MemoryOps, ToolResult, ToolSpec, call_tool

log = logging.getLogger("memtrace.mcp")

OpsForCall = Callable[[ToolSpec, Context[Any, Any]], Awaitable[MemoryOps]]
"""Gives the operations a tool call runs against; raises ``Unauthorized``/``Forbidden``."""

INSTRUCTIONS = (
    "memtrace is your long-term, time-aware memory, shared with the other agents of your "
    "organisation. Remember what you do, see and decide (memtrace_remember, memtrace_decide); "
    "recall recent work before starting (memtrace_recall, memtrace_session_context); search "
    "what teammates found (memtrace_search)."
)


class _RawArguments(ArgModelBase):
    """Accepts any arguments as they came: :func:`memtrace.tools.call_tool` validates them, so
    every transport reports the same messages (naming the argument)."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.model_extra or {})}


def error_text(exc: MemtraceError) -> str:
    """The message a model reads for a failed call: the REST error body's text, redacted the
    same way (never a stack trace or a secret)."""
    body = exc.to_body()
    return f"{body['error']} (hint: {body['hint']})" if body.get("hint") else body["error"]


def error_result(exc: MemtraceError) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(text=error_text(exc))],
        structured_content={**exc.to_body(), "status": exc.status_code},
        is_error=True,
    )


class _ToolCrashed(MemtraceError):
    default_message = "internal error while running the tool (the server log has details)"


def success_result(result: ToolResult) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=result.text)], structured_content=result.data)


def _json_valued(schema: dict[str, Any]) -> set[str]:
    """Arguments that take an array or object and never a string."""
    names = set()
    for name, prop in schema.get("properties", {}).items():
        types = {prop.get("type")} | {option.get("type") for option in prop.get("anyOf", [])}
        if types & {"array", "object"} and "string" not in types:
            names.add(name)
    return names


def _unquote_json(arguments: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """Some clients (Claude Desktop among them) send list and object arguments as JSON text;
    decode those, and leave anything else for validation to report."""
    fixed = dict(arguments)
    for name in names & fixed.keys():
        value = fixed[name]
        if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                fixed[name] = json.loads(value)
    return fixed


def _render(spec: ToolSpec, ops_for: OpsForCall, default_agent_id: str | None) -> Tool:
    schema = spec.input_schema(default_agent_id)
    json_valued = _json_valued(schema)

    async def run(arguments: dict[str, Any], ctx: Context[Any, Any]) -> CallToolResult:
        try:
            ops = await ops_for(spec, ctx)
            fixed = _unquote_json(arguments, json_valued)
            result = await call_tool(spec.name, fixed, ops, default_agent_id=default_agent_id)
        except MemtraceError as exc:
            log.info("tool %s refused: %s", spec.name, exc.message)
            return error_result(exc)
        except Exception as exc:  # a bug: the model gets a plain error, the log the code path
            # Only the frames, not the exception's text: that may quote the arguments.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("tool %s crashed with %s:\n%s", spec.name, type(exc).__name__, frames)
            return error_result(_ToolCrashed())
        return success_result(result)

    return Tool(
        fn=run,
        name=spec.name,
        description=spec.description,
        parameters=schema,
        fn_metadata=FuncMetadata(arg_model=_RawArguments),
        is_async=True,
        context_kwarg="ctx",
        annotations=ToolAnnotations(
            read_only_hint=spec.permission == "read",
            destructive_hint=False,
            idempotent_hint=spec.permission == "read",
            open_world_hint=False,
        ),
    )


class _Server(MCPServer):
    """The SDK's server, with its own error texts (an unknown tool name) redacted like every
    memtrace error."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc, UnexpectedToolError):
                raise
            raise ToolError(redact(str(exc))) from exc.__cause__


def build_server(ops_for: OpsForCall, *, default_agent_id: str | None = None) -> MCPServer:
    """An ``MCPServer`` exposing the memtrace tools (:data:`memtrace.tools.TOOLS`).

    Args:
        ops_for: where each call's operations come from (and who may run it).
        default_agent_id: ``MEMTRACE_AGENT_ID``; makes ``agent_id`` optional in the tools
            where the agent writes or is the subject (never in search, where it filters).
    """
    tools = [_render(spec, ops_for, default_agent_id or None) for spec in TOOLS]
    return _Server(
        name="memtrace",
        version=__version__,
        instructions=INSTRUCTIONS,
        tools=tools,
        log_level="WARNING",
    )


def fixed_ops(ops: MemoryOps) -> OpsForCall:
    """Every call runs against the same operations (stdio: one local org or one remote key)."""

    async def ops_for(spec: ToolSpec, ctx: Context[Any, Any]) -> MemoryOps:
        return ops

    return ops_for
