"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis).

A real ``memtrace serve`` subprocess is fuzzed through ``/openapi.json``: every operation,
with positive (schema-conforming) and negative (schema-violating) examples, a bounded number
per operation so CI stays fast. Every response must be a non-5xx status documented for the
operation, with a body matching its documented schema. ``MEMTRACE_FUZZ_EXAMPLES`` raises the
number of examples per operation and mode (default 15) for long runs; see bench/README.md.

The operations are driven through hypothesis directly (one test, all operations), because the
schemathesis pytest plugin's lazy loading does not run under this pytest version; the plugin is
not loaded (``-p no:schemathesis`` in pyproject.toml) and schemathesis is imported by the test,
so a test run that does not fuzz does not pay for importing it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.helpers import ServerProcess

if TYPE_CHECKING:
    from schemathesis.generation.modes import GenerationMode

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

EXAMPLES = int(os.environ.get("MEMTRACE_FUZZ_EXAMPLES", "15"))


@pytest.fixture
def fuzz_server(tmp_path: Any) -> Iterator[ServerProcess]:
    env = {
        "MEMTRACE_LIMITS_RATE_PER_S": "0",
        # GET /api/v1/stream answers 200 and stays open: let each fuzzed stream end quickly
        "MEMTRACE_LIMITS_STREAM_IDLE_S": "0.3",
    }
    proc = ServerProcess(tmp_path / "fuzz", env=env).start()
    yield proc
    proc.stop()


def _fuzz(operation: Any, mode: GenerationMode, url: str, key: str) -> None:
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same examples on every run: failures reproduce
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=url,
            headers={"x-api-key": key},
            timeout=30,
            # Rules JSON Schema cannot state (a time at most 5 minutes ahead, since <= until,
            # the window cap, content counted in UTF-8 bytes) reject some schema-valid data
            # with a documented 400; every other check applies.
            excluded_checks=[positive_data_acceptance],
        )

    run()


def test_every_operation_survives_fuzzing(fuzz_server: ServerProcess) -> None:
    import schemathesis
    from schemathesis.generation.modes import GenerationMode

    assert fuzz_server.admin_key
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, fuzz_server.url, fuzz_server.admin_key)
            except Unsatisfiable:  # nothing to negate (no parameters, or only free strings)
                continue
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} [{mode.value}]: {exc}"[:3000])
    assert operations >= 20, "the schema lost operations"
    log = fuzz_server.log_path.read_text()
    assert not failures, "\n\n".join(failures) + "\n\n" + log[-3000:]
    assert "Traceback" not in log, log[-4000:]
