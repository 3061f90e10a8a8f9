"""Drop-in for ``openai-agents-memtrace`` 0.2 (the Go memtrace's OpenAI Agents integration).

Programs written for it keep working unchanged on memtrace::

    from memtrace import AsyncMemtrace
    from openai_agents_memtrace import MemtraceSession, create_memtrace_tools

    tools = create_memtrace_tools(client, "agent_1", session_id=None)
    session = await MemtraceSession.create(client, agent_id="agent_1", inject_context=True)

Same call signatures, tool names, descriptions, parameter schemas and defaults as 0.2 (the model
may still pass ``agent_id``/``session_id``), on memtrace's client. Installed with the
``openai-agents`` extra (``pip install 'memtrace[openai-agents]'``). New code can use
:mod:`memtrace.integrations.openai_agents`, whose session survives restarts.
"""

from openai_agents_memtrace.session import MemtraceSession
from openai_agents_memtrace.tools import create_memtrace_tools

__version__ = "0.2.0"
__all__ = ["MemtraceSession", "__version__", "create_memtrace_tools"]
