"""A schema-driven fuzzer (schemathesis) sends what the OpenAPI document allows
and what it forbids to every operation of a running headend (real PostgreSQL
and Temporal), each case also with a NUL character planted in one of its text
values: no answer may be a 5xx. A new route is fuzzed as soon as it is in the
document."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
import schemathesis
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

pytestmark = pytest.mark.integration
# Enough to find each bug of issue 11's class in seconds, small enough for CI.
EXAMPLES = 400


def _fuzz(spec: dict[str, Any], base_url: str, token: str) -> list[str]:
    """Runs in a thread: the headend answers on the test's event loop meanwhile."""
    schema = schemathesis.openapi.from_dict(spec)
    strategies = [
        result.ok().as_strategy(generation_mode=mode)
        for result in schema.get_all_operations()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    failures: list[str] = []
    session = requests.Session()
    auth = {"Authorization": f"Bearer {token}"}
    calls = [0]

    def send(case: Any) -> None:
        try:
            response = case.call(base_url=base_url, session=session, headers=auth, timeout=30)
        except (requests.exceptions.InvalidHeader, UnicodeError):
            return  # the client library refuses to send it: nothing reached the server
        calls[0] += 1
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} query={case.query!r} "
                f"body={case.body!r:.200} -> {response.status_code} {response.text[:300]}"
            )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies), data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        send(case)
        if _poison(case, data):
            send(case)

    run()
    assert calls[0] >= EXAMPLES, calls  # the run did reach the server
    return failures


def _poison(case: Any, data: st.DataObject) -> bool:
    """Plants a NUL in one text value of the case's path, query or JSON body."""
    places = [
        (holder, key)
        for holder in (case.path_parameters, case.query, case.body)
        if isinstance(holder, dict)
        for key, value in holder.items()
        if isinstance(value, str)
    ]
    if not places:
        return False
    holder, key = data.draw(st.sampled_from(places))
    holder[key] = holder[key][:1] + "\x00" + holder[key][1:]
    return True


async def test_no_generated_request_gets_a_server_error(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())  # real ids exist for the fuzzer to miss
    spec = (await headend.api.get("/openapi.json")).json()
    base_url = str(headend.api.base_url).rstrip("/")
    failures = await asyncio.to_thread(_fuzz, spec, base_url, headend.admin_token)
    assert failures == [], "\n".join(failures[:20])
