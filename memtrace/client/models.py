"""The models of the client SDK under the names of the published ``memtrace-sdk`` 0.2.0.

They are the server's own wire models (:mod:`memtrace.domain.models`, the one source of truth), so a
request the SDK builds is validated by the same rules the server applies, and response models
ignore fields they do not know and accept any ``memory_type`` string.
"""

from __future__ import annotations

from memtrace.domain.models import (
    Agent,
    AgentContext,
    AgentList,
    AgentStats,
    DuplicateEntry,
    ExportParams,
    FeedCursor,
    FeedPage,
    FeedParams,
    ForgetRequest,
    ForgetResult,
    Memory,
    MemoryBatchResult,
    MemoryList,
    SearchResult,
    Session,
    SessionContext,
    SessionList,
    StreamParams,
    Timeline,
)
from memtrace.domain.models import AgentCreate as RegisterAgentRequest
from memtrace.domain.models import ContextRequest as ContextOptions
from memtrace.domain.models import ListParams as ListOptions
from memtrace.domain.models import MemoryCreate as AddMemoryRequest
from memtrace.domain.models import OutcomeCreate as OutcomeRequest
from memtrace.domain.models import SearchRequest as SearchQuery
from memtrace.domain.models import SessionCreate as CreateSessionRequest
from memtrace.domain.models import SessionUpdate as UpdateSessionRequest
from memtrace.domain.models import TimelineParams as TimelineOptions

__all__ = [
    "AddMemoryRequest",
    "Agent",
    "AgentContext",
    "AgentList",
    "AgentStats",
    "ContextOptions",
    "CreateSessionRequest",
    "DuplicateEntry",
    "ExportParams",
    "FeedCursor",
    "FeedPage",
    "FeedParams",
    "ForgetRequest",
    "ForgetResult",
    "ListOptions",
    "Memory",
    "MemoryBatchResult",
    "MemoryList",
    "OutcomeRequest",
    "RegisterAgentRequest",
    "SearchQuery",
    "SearchResult",
    "Session",
    "SessionContext",
    "SessionList",
    "StreamParams",
    "Timeline",
    "TimelineOptions",
    "UpdateSessionRequest",
]
