"""Timelines and decision outcomes through the real app (REST; the SDK: tests/client/).

Every store's counts are checked by the storage contract (tests/storage/test_contract_timeline.py);
these check the wire: parameters, defaults, the response shape, errors naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from memtrace.domain.models import Memory, Timeline

MEM = "/api/v1/memories"
HOUR = timedelta(hours=1)


def _at(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).isoformat()


async def _write(api: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    body = {"agent_id": "crawler", "content": "did something", **fields}
    response = await api.post(MEM, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_timeline_buckets_and_groups(api: httpx.AsyncClient) -> None:
    for i, (ago, event, tags) in enumerate(
        [
            (HOUR * 3.5, "error", ["deploy"]),
            (HOUR * 3.4, "error", []),
            (HOUR * 1.2, "page_crawled", ["deploy", "eu"]),
            (HOUR * 0.1, "error", ["eu"]),
        ]
    ):
        await _write(api, content=f"m{i}", event_type=event, tags=tags, time=_at(ago))
    await _write(api, agent_id="other", content="elsewhere", time=_at(HOUR * 2))

    response = await api.get(
        "/api/v1/timeline",
        params={"since": "6h", "bucket": "1h", "group_by": "event_type", "agent_id": "crawler"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    Timeline.model_validate(body)
    assert (body["bucket"], body["bucket_seconds"], body["group_by"]) == ("1h", 3600, "event_type")
    assert body["total"] == 4
    assert len(body["buckets"]) in (6, 7)  # every hour of [since, until), empty ones too
    starts = [b["start"] for b in body["buckets"]]
    assert starts == sorted(starts) and all(s.endswith(":00:00.000000Z") for s in starts)
    assert sum(b["groups"].get("error", 0) for b in body["buckets"]) == 3
    assert all(sum(b["groups"].values()) == b["count"] for b in body["buckets"])
    assert starts[0] <= body["since"] < starts[1]  # the first bucket holds since

    errors = (
        await api.get("/api/v1/timeline", params={"since": "6h", "event_type": "error"})
    ).json()
    assert errors["total"] == 3 and errors["group_by"] is None
    assert all(b["groups"] == {} for b in errors["buckets"])

    tags = (
        await api.get("/api/v1/timeline", params={"since": "6h", "bucket": "6h", "group_by": "tag"})
    ).json()
    totals: dict[str, int] = {}
    for b in tags["buckets"]:
        for name, n in b["groups"].items():
            totals[name] = totals.get(name, 0) + n
    assert totals == {"deploy": 2, "eu": 2} and tags["total"] == 5

    default = (await api.get("/api/v1/timeline")).json()  # last 24 hours, hourly
    assert default["bucket"] == "1h" and default["total"] == 5
    assert len(default["buckets"]) in (24, 25)


async def test_timeline_bad_input_names_the_field(api: httpx.AsyncClient) -> None:
    cases = [
        ({"bucket": "hourly"}, "bucket"),
        ({"since": "30d", "bucket": "1m"}, "bucket"),  # 43,200 buckets
        ({"group_by": "colour"}, "group_by"),
        ({"event_type": "not valid"}, "event_type"),
        ({"memory_type": "dream"}, "memory_type"),
        ({"since": "yesterday"}, "since"),
        ({"tags": "no spaces"}, "tags"),
        ({"min_importance": "2"}, "min_importance"),
    ]
    for params, field in cases:
        response = await api.get("/api/v1/timeline", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"].startswith(f"{field}: "), response.text


async def test_outcome_of_a_decision(api: httpx.AsyncClient) -> None:
    decision = await _write(
        api,
        content="Ship on Friday",
        memory_type="decision",
        event_type="decision",
        session_id="sess_ship",
        metadata={"reasoning": "tests are green"},
    )
    path = f"{MEM}/{decision['id']}/outcome"
    body = {"outcome": "partial", "content": "shipped, one rollback", "metrics": {"errors": 3}}
    response = await api.post(path, json=body)
    assert response.status_code == 201, response.text
    outcome = response.json()
    Memory.model_validate(outcome)
    assert outcome["parent_id"] == decision["id"] and outcome["event_type"] == "outcome"
    assert outcome["memory_type"] == "episodic" and outcome["session_id"] == "sess_ship"
    assert outcome["agent_id"] == "crawler"
    assert outcome["metadata"] == {"outcome": "partial", "metrics": {"errors": 3}}
    assert (await api.get(f"{MEM}/{outcome['id']}")).json() == outcome  # an ordinary memory

    again = await api.post(path, json=body)
    assert again.status_code == 409 and again.json()["existing_id"] == outcome["id"]
    by_other = await api.post(path, json={**body, "agent_id": "reviewer", "outcome": "success"})
    assert by_other.status_code == 201 and by_other.json()["agent_id"] == "reviewer"

    context = (await api.post("/api/v1/sessions/sess_ship/context", json={})).json()
    assert "Ship on Friday — reasoning: tests are green — outcome: success" in context["context"]

    stats = (await api.get("/api/v1/agents/crawler/stats")).json()
    assert stats["decisions_with_outcome"] == 1 and stats["decision_successes"] == 0
    assert stats["decision_success_rate"] == 0.0

    not_decision = await _write(api, content="just a note")
    response = await api.post(f"{MEM}/{not_decision['id']}/outcome", json=body)
    assert response.status_code == 400 and response.json()["error"].startswith("decision_id: ")
    missing = await api.post(f"{MEM}/mem_01ARZ3NDEKTSV4RRFFQ69G5FAV/outcome", json=body)
    assert missing.status_code == 404
    for bad, field in (
        ({"outcome": "great", "content": "x"}, "outcome"),
        ({"outcome": "success"}, "content"),
        ({"outcome": "success", "content": "x", "metrics": {"a": "1"}}, "metrics.a"),
        ({"outcome": "success", "content": "x", "agent_id": "9bad"}, "agent_id"),
    ):
        response = await api.post(path, json=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"].startswith(f"{field}: "), response.text
