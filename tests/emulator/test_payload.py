"""The webhook payload is parsed strictly and kept exactly: the emulator is a strict oracle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sixtyfour_frames.emulator import Emulator

from ._support import COMPANY_WF, TLS, start_run

RUN = "/workflows/run"


def _post_raw(http: httpx.Client, content: bytes) -> httpx.Response:
    return http.post(
        RUN,
        params={"workflow_id": COMPANY_WF},
        content=content,
        headers={"content-type": "application/json"},
    )


def test_values_are_kept_exactly(emulator: Emulator, http: httpx.Client) -> None:
    record = {
        "z_first": "key order is kept",
        "company_name": 'Zürich 東京 \u2028 "quoted"\n',
        "big": 2**63 + 1,
        "negative_zero": -0.0,
        "tiny": 5e-324,
        "tenth": 0.1,
        "flag": False,
        "nothing": None,
        "nested": {"list": [1, "two", None, {"x": 1.5}]},
    }
    job_id = start_run(http, [record])
    (parsed,) = emulator.run_input(job_id)
    assert parsed == record
    assert list(parsed) == list(record)
    assert repr(parsed["negative_zero"]) == "-0.0"
    assert type(parsed["big"]) is int


@pytest.mark.parametrize(
    "content",
    [
        b'{"webhook_payload": [{"company_name": "A", "company_name": "A"}]}',
        b'{"webhook_payload": [{"company_name": "A", "x": {"k": 1, "k": 2}}]}',
        b'{"webhook_payload": [{"company_name": "A"}], "webhook_payload": []}',
    ],
)
def test_duplicate_keys_anywhere_are_rejected(
    emulator: Emulator, http: httpx.Client, content: bytes
) -> None:
    response = _post_raw(http, content)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_duplicate_key"
    assert emulator.ledger()["runs_created"] == 0


@pytest.mark.parametrize(
    "content",
    [
        b'{"webhook_payload": [{"company_name": "A", "v": NaN}]}',
        b'{"webhook_payload": [{"company_name": "A", "v": Infinity}]}',
        b'{"webhook_payload": [{"company_name": "A", "v": -Infinity}]}',
        b'{"webhook_payload": [{"company_name": "\xff"}]}',
        b'{"webhook_payload": [{"company_name": "A"}]} trailing',
    ],
)
def test_non_json_is_rejected(emulator: Emulator, http: httpx.Client, content: bytes) -> None:
    response = _post_raw(http, content)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert response.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize("content", [b"", b"   ", b'{"webhook_payload": null}', b"{}"])
def test_a_webhook_workflow_needs_a_payload(http: httpx.Client, content: bytes) -> None:
    response = _post_raw(http, content)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("webhook_payload is required")


def test_unknown_body_fields_are_ignored(emulator: Emulator, http: httpx.Client) -> None:
    response = _post_raw(http, b'{"webhook_payload": {"company_name": "A"}, "future_field": 1}')
    assert response.status_code == 200


def test_every_posted_body_is_recorded_byte_for_byte(
    emulator: Emulator, http: httpx.Client
) -> None:
    content = b'{"webhook_payload":[{"company_name":"A"}]}'
    _post_raw(http, content)
    (recorded,) = emulator.requests("run")
    assert recorded.body == content
    assert recorded.json() == {"webhook_payload": [{"company_name": "A"}]}
    assert recorded.param("workflow_id") == COMPANY_WF
    assert recorded.header("X-API-Key") == emulator.api_key
    assert recorded.method == "POST"
    assert recorded.path == RUN


@pytest.fixture(scope="module")
def shared(_session_emulator: Emulator) -> Iterator[tuple[Emulator, httpx.Client]]:
    """Hypothesis runs many examples per test call: share one emulator and client across them."""
    emu = _session_emulator
    with httpx.Client(base_url=emu.base_url, headers=emu.headers, verify=TLS) as client:
        yield emu, client


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
RECORDS = st.lists(
    st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5).map(
        lambda record: {"company_name": "Acme", **record}
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(records=RECORDS)
def test_any_json_records_round_trip_exactly(
    shared: tuple[Emulator, httpx.Client], records: list[dict[str, Any]]
) -> None:
    emu, http = shared
    job_id = start_run(http, records)
    parsed = emu.run_input(job_id)
    assert parsed == records
    assert [list(r) for r in parsed] == [list(r) for r in records]
