"""Retention policies: an org's policy over the configured defaults, type by type, and the
rules a sweep applies; invalid policies are refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from memtrace.config import load_settings
from memtrace.domain.errors import ConfigError, InvalidInput
from memtrace.domain.lifecycle import DAY_US, RetentionPolicy

NOW = 1_900_000_000_000_000


def test_rules_group_types_by_days_and_keep_for_ever_types_out() -> None:
    policy = RetentionPolicy(30, {"decision": 365, "session": 0})
    assert policy.rules(NOW) == [
        (("episodic", "entity"), NOW - 30 * DAY_US),
        (("decision",), NOW - 365 * DAY_US),
    ]
    assert RetentionPolicy().rules(NOW) == []
    assert RetentionPolicy(0, {"session": 7}).rules(NOW) == [(("session",), NOW - 7 * DAY_US)]
    assert policy.describe() == "30 days (decision: 365 days, session: for ever)"


def test_org_policy_over_defaults() -> None:
    defaults = RetentionPolicy(90, {"decision": 365, "session": 7})
    own = RetentionPolicy(None, {"session": 30})
    assert own.over(defaults) == RetentionPolicy(90, {"decision": 365, "session": 30})
    assert RetentionPolicy(10).over(defaults).days_of("entity") == 10
    assert RetentionPolicy(0).over(defaults).days_of("episodic") == 0


@pytest.mark.parametrize(
    ("days", "types", "field"),
    [(-1, {}, "days"), (10, {"dream": 3}, "type"), (10, {"decision": -2}, "type decision")],
)
def test_invalid_policies_are_refused(days: int, types: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}"):
        RetentionPolicy(days, types)


def test_retention_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "retention.toml"  # not memtrace.toml: the cwd is tmp_path
    config.write_text("[retention]\ndays = 30\ntypes = {decision = 365}\n")
    assert load_settings(config).retention.policy() == RetentionPolicy(30, {"decision": 365})
    monkeypatch.setenv("MEMTRACE_RETENTION_TYPES", '{"session": 2}')
    assert load_settings(None).retention.policy() == RetentionPolicy(0, {"session": 2})
    config.write_text("[retention]\ntypes = {dream = 2}\n")
    with pytest.raises(ConfigError, match="retention: type: 'dream' is not a memory type"):
        load_settings(config)
