"""The OpenAPI document describes the real models, routes and error bodies."""

from __future__ import annotations

import httpx

from memtrace.domain import models


async def test_openapi_uses_the_wire_models(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    for model in (
        models.Memory,
        models.MemoryCreate,
        models.MemoryBatchCreate,
        models.MemoryList,
        models.SearchRequest,
        models.SearchResult,
        models.Agent,
        models.AgentStats,
        models.Session,
        models.SessionContext,
        models.ErrorBody,
        models.FeedPage,
        models.FeedCursor,
        models.Timeline,
        models.OutcomeCreate,
    ):
        assert set(components[model.__name__]["properties"]) == set(model.model_fields), model
    assert "HTTPValidationError" not in components
    paths = schema["paths"]
    expected = {
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
        ("post", "/api/v1/memories"),
        ("get", "/api/v1/memories"),
        ("get", "/api/v1/memories/{memory_id}"),
        ("post", "/api/v1/search"),
        ("post", "/api/v1/agents"),
        ("get", "/api/v1/agents"),
        ("get", "/api/v1/agents/{agent_id}"),
        ("get", "/api/v1/agents/{agent_id}/stats"),
        ("get", "/api/v1/agents/{agent_id}/memories"),
        ("post", "/api/v1/agents/{agent_id}/context"),
        ("delete", "/api/v1/agents/{agent_id}"),
        ("post", "/api/v1/sessions"),
        ("get", "/api/v1/sessions"),
        ("get", "/api/v1/sessions/{session_id}"),
        ("put", "/api/v1/sessions/{session_id}"),
        ("get", "/api/v1/sessions/{session_id}/memories"),
        ("post", "/api/v1/sessions/{session_id}/context"),
        ("get", "/api/v1/feed"),
        ("post", "/api/v1/feed/confirm"),
        ("get", "/api/v1/feed/cursor"),
        ("get", "/api/v1/stream"),
        ("get", "/api/v1/timeline"),
        ("post", "/api/v1/memories/{decision_id}/outcome"),
    }
    assert {(m, p) for p, ops in paths.items() for m in ops} >= expected
    write = paths["/api/v1/memories"]["post"]
    body_refs = write["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in body_refs} == {"MemoryCreate", "MemoryBatchCreate"}
    for path, operations in paths.items():
        for operation in operations.values():
            assert "422" not in operation["responses"], path
            if path.startswith("/api/"):
                error = operation["responses"]["400"]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorBody"}


async def test_memory_wire_dict_matches_the_model(api: httpx.AsyncClient) -> None:
    full = {
        "agent_id": "a",
        "content": "c",
        "session_id": "s",
        "tags": ["t"],
        "importance": 0.5,
        "metadata": {"k": 1},
        "parent_id": "mem_x",
        "event_type": "e",
    }
    memory = (await api.post("/api/v1/memories", json=full)).json()
    assert set(memory) == set(models.Memory.model_fields)
    assert models.Memory.model_validate(memory).model_dump(mode="json") == memory


async def test_each_parameter_is_listed_once(client: httpx.AsyncClient) -> None:
    # Found with generated clients: /agents/{agent_id}/memories and /sessions/{session_id}/
    # memories listed agent_id/session_id twice, in the path and as an ignored query parameter.
    schema = (await client.get("/openapi.json")).json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            names = [p["name"] for p in operation.get("parameters", [])]
            assert len(names) == len(set(names)), (method, path, names)
    session_list = schema["paths"]["/api/v1/sessions/{session_id}/memories"]["get"]
    assert {p["name"]: p["in"] for p in session_list["parameters"]}["agent_id"] == "query"
    agent_list = schema["paths"]["/api/v1/agents/{agent_id}/memories"]["get"]
    assert {p["name"]: p["in"] for p in agent_list["parameters"]}["session_id"] == "query"
