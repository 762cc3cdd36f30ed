"""Contract: every route, every documented error, and every 200 body against the OpenAPI schemas."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from sixtyfour_frames.emulator import BUILTIN_WORKFLOW_NAMES, Emulator

from ._support import COMPANY_WF, Schemas, companies, finish, links, live, start_run

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
RUN = "/workflows/run"
RUNS = "/workflows/runs"
LIVE = "/workflows/runs/{run_id}/live_status"
LINKS = "/workflows/runs/{run_id}/results/download-links"
CANCEL = "/workflows/cancel"
WORKFLOWS = "/workflows"
WORKFLOW = "/workflows/{workflow_id}"


def _timestamp(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _validation_error(
    response: httpx.Response, schemas: Schemas, path: str, method: str
) -> list[Any]:
    assert response.status_code == 422, response.text
    body = response.json()
    schemas.check_response(path, method, body, status=422)
    assert body["detail"], "a 422 lists at least one problem"
    errors: list[Any] = body["detail"]
    return errors


# ---- authentication ----------------------------------------------------------------------------

API_CALLS = [
    ("POST", f"{RUN}?workflow_id={COMPANY_WF}"),
    ("GET", RUNS),
    ("GET", LIVE.format(run_id=UNKNOWN_UUID)),
    ("POST", f"{CANCEL}?job_id={UNKNOWN_UUID}"),
    ("GET", LINKS.format(run_id=UNKNOWN_UUID)),
    ("GET", WORKFLOWS),
    ("GET", WORKFLOW.format(workflow_id=COMPANY_WF)),
]


@pytest.mark.parametrize(("method", "path"), API_CALLS)
@pytest.mark.parametrize("credential", ["none", "wrong key", "bearer"])
def test_every_api_route_answers_401_without_the_right_key(
    emulator: Emulator, anonymous: httpx.Client, method: str, path: str, credential: str
) -> None:
    headers = {
        "none": {},
        "wrong key": {"x-api-key": "sk-wrong"},
        "bearer": {"authorization": f"Bearer {emulator.api_key}"},  # only x-api-key is accepted
    }[credential]
    response = anonymous.request(method, path, headers=headers, json={"webhook_payload": []})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}
    assert emulator.ledger()["runs_created"] == 0


# ---- POST /workflows/run -------------------------------------------------------------------------


def test_run_returns_a_started_response_without_already_started(
    http: httpx.Client, schemas: Schemas
) -> None:
    response = http.post(
        RUN, params={"workflow_id": COMPANY_WF}, json={"webhook_payload": companies(2)}
    )
    assert response.status_code == 200
    body = response.json()
    schemas.check_response(RUN, "POST", body)
    assert body["status"] == "queued"
    assert body["workflow_id"] == COMPANY_WF
    assert body["cache_config"] is None
    assert "already_started" not in body
    uuid.UUID(body["job_id"])


def test_run_accepts_a_single_object_as_one_row(emulator: Emulator, http: httpx.Client) -> None:
    job_id = start_run(http, {"company_name": "Solo"})
    assert emulator.run_input(job_id) == [{"company_name": "Solo"}]


def test_run_without_workflow_id_is_a_422(http: httpx.Client, schemas: Schemas) -> None:
    errors = _validation_error(
        http.post(RUN, json={"webhook_payload": companies(1)}), schemas, RUN, "POST"
    )
    assert errors[0]["loc"] == ["query", "workflow_id"]
    assert errors[0]["type"] == "missing"


@pytest.mark.parametrize("workflow_id", [UNKNOWN_UUID, "wf_abc123"])
def test_run_of_an_unknown_workflow_is_a_404(http: httpx.Client, workflow_id: str) -> None:
    response = http.post(
        RUN, params={"workflow_id": workflow_id}, json={"webhook_payload": companies(1)}
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "Workflow not found"}


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        (b'{"webhook_payload": [', "json_invalid"),
        (b'{"webhook_payload": [{"company_name": NaN}]}', "json_invalid"),
        (b"[1, 2]", "model_attributes_type"),
        (b'{"webhook_payload": "Acme"}', "list_type"),
        (b'{"webhook_payload": [{"company_name": "A"}, 3]}', "dict_type"),
        (b'{"webhook_payload": [], "specs_override": "x"}', "dict_type"),
        (
            b'{"webhook_payload": [{"company_name": "A", "company_name": "B"}]}',
            "json_duplicate_key",
        ),
    ],
)
def test_run_with_a_malformed_body_is_a_422(
    emulator: Emulator, http: httpx.Client, schemas: Schemas, body: bytes, error_type: str
) -> None:
    response = http.post(
        RUN,
        params={"workflow_id": COMPANY_WF},
        content=body,
        headers={"content-type": "application/json"},
    )
    errors = _validation_error(response, schemas, RUN, "POST")
    assert error_type in [e["type"] for e in errors]
    assert emulator.ledger()["runs_created"] == 0


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"save_json": "maybe"}, ["query", "save_json"]),
        ({"result_formats": "xml"}, ["query", "result_formats", 0]),
    ],
)
def test_run_with_bad_query_values_is_a_422(
    http: httpx.Client, schemas: Schemas, params: dict[str, str], loc: list[Any]
) -> None:
    response = http.post(
        RUN, params={"workflow_id": COMPANY_WF, **params}, json={"webhook_payload": companies(1)}
    )
    assert _validation_error(response, schemas, RUN, "POST")[0]["loc"] == loc


@pytest.mark.parametrize(
    ("workflow", "body", "detail_start"),
    [
        ("company_enrichment", {"webhook_payload": []}, "webhook_payload is empty"),
        ("company_enrichment", {}, "webhook_payload is required"),
        (
            "company_enrichment",
            {"webhook_payload": [{"name": "Acme"}]},
            "webhook_payload is missing",
        ),
        (
            "lead_enrichment",
            {"webhook_payload": [{"full_name": "Ada"}]},
            "webhook_payload is missing",
        ),
        (
            "read_csv_source",
            {"webhook_payload": [{"company_name": "A"}]},
            "webhook_payload can only",
        ),
        ("read_csv_source", {}, "Workflows starting with read_csv"),
    ],
)
def test_run_that_cannot_start_is_a_400(
    emulator: Emulator, http: httpx.Client, workflow: str, body: dict[str, Any], detail_start: str
) -> None:
    response = http.post(RUN, params={"workflow_id": Emulator.workflow_id(workflow)}, json=body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail_start)
    assert emulator.ledger()["runs_created"] == 0


def test_missing_column_error_names_the_column_and_record(http: httpx.Client) -> None:
    payload = [{"company_name": "A"}, {"website": "b.example"}]
    response = http.post(RUN, params={"workflow_id": COMPANY_WF}, json={"webhook_payload": payload})
    assert "company_name" in response.json()["detail"]
    assert "record 1" in response.json()["detail"]


def test_read_csv_workflow_runs_with_a_resource_handle(
    emulator: Emulator, http: httpx.Client
) -> None:
    response = http.post(
        RUN,
        params={"workflow_id": Emulator.workflow_id("read_csv_source")},
        json={"specs_override": {"resource_handle_id": "rh_123"}},
    )
    assert response.status_code == 200
    finish(emulator)
    final = links(http, response.json()["job_id"])[-1]
    assert final["row_count"] == 5


# ---- GET /workflows/runs ---------------------------------------------------------------------------


def test_list_runs_is_a_bare_array_of_run_responses(
    emulator: Emulator, http: httpx.Client, schemas: Schemas
) -> None:
    job_id = start_run(http, companies(3))
    finish(emulator)
    body = http.get(RUNS).json()
    schemas.check_response(RUNS, "GET", body)
    (item,) = body
    assert item["job_id"] == job_id
    assert item["workflow_name"] == "company_enrichment"
    assert item["blocks"] is None
    assert item["blocks_count"] == 2
    assert item["metrics"] == {"rows_in": 3, "rows_out": 3, "credits": 3}
    assert item["duration_ms"] == 6000  # two blocks × three rows × 1 s
    for field in ("created_at", "updated_at", "queued_at", "started_at", "completed_at"):
        _timestamp(item[field])


@pytest.mark.parametrize(
    ("limit", "error_type"),
    [
        ("0", "greater_than_equal"),
        ("501", "less_than_equal"),
        ("ten", "int_parsing"),
        ("1.5", "int_parsing"),
    ],
)
def test_list_runs_limit_outside_1_to_500_is_a_422(
    http: httpx.Client, schemas: Schemas, limit: str, error_type: str
) -> None:
    errors = _validation_error(http.get(RUNS, params={"limit": limit}), schemas, RUNS, "GET")
    assert errors[0]["loc"] == ["query", "limit"]
    assert errors[0]["type"] == error_type


@pytest.mark.parametrize("limit", ["1", "500"])
def test_list_runs_accepts_the_limit_bounds(http: httpx.Client, limit: str) -> None:
    assert http.get(RUNS, params={"limit": limit}).status_code == 200


@pytest.mark.parametrize("workflow_id", [UNKNOWN_UUID, "unknown"])
def test_list_runs_of_an_unknown_workflow_is_a_404(http: httpx.Client, workflow_id: str) -> None:
    response = http.get(RUNS, params={"workflow_id": workflow_id})
    assert response.status_code == 404
    assert response.json() == {"detail": "Workflow not found"}


# ---- GET /workflows/runs/{run_id}/live_status ---------------------------------------------------


def test_live_status_validates_in_every_state(
    emulator: Emulator, http: httpx.Client, schemas: Schemas
) -> None:
    path = LIVE
    done = start_run(http, companies(2))
    failing = start_run(http, companies(2), workflow_id=Emulator.workflow_id("failing"))
    cancelled = start_run(http, companies(50))
    queued_body = live(http, done)
    schemas.check_response(path, "GET", queued_body)
    emulator.advance(3)
    running_body = live(http, done)
    schemas.check_response(path, "GET", running_body)
    assert http.post(CANCEL, params={"job_id": cancelled}).status_code == 200
    finish(emulator)
    statuses = []
    for job_id in (done, failing, cancelled):
        body = live(http, job_id)
        schemas.check_response(path, "GET", body)
        statuses.append(body["overall_status"])
    assert [queued_body["overall_status"], running_body["overall_status"], *statuses] == [
        "queued",
        "running",
        "completed",
        "failed",
        "cancelled",
    ]


@pytest.mark.parametrize("route", [LIVE, LINKS])
def test_a_non_uuid_run_id_is_a_422(http: httpx.Client, schemas: Schemas, route: str) -> None:
    response = http.get(route.format(run_id="run_xyz789"))
    errors = _validation_error(response, schemas, route, "GET")
    assert errors[0]["loc"] == ["path", "run_id"]
    assert errors[0]["type"] == "uuid_parsing"


@pytest.mark.parametrize("route", [LIVE, LINKS])
def test_an_unknown_run_is_a_404(http: httpx.Client, route: str) -> None:
    response = http.get(route.format(run_id=UNKNOWN_UUID))
    assert response.status_code == 404
    assert response.json() == {"detail": "Workflow run not found"}


# ---- POST /workflows/cancel --------------------------------------------------------------------


def test_cancel_validates_and_says_canceled(
    emulator: Emulator, http: httpx.Client, schemas: Schemas
) -> None:
    job_id = start_run(http, companies(5))
    body = http.post(CANCEL, params={"job_id": job_id}).json()
    schemas.check_response(CANCEL, "POST", body)
    assert body == {"job_id": job_id, "status": "canceled"}


def test_cancel_accepts_the_job_id_in_a_json_body(http: httpx.Client) -> None:
    job_id = start_run(http, companies(5))
    response = http.post(CANCEL, json={"job_id": job_id})
    assert response.json() == {"job_id": job_id, "status": "canceled"}


@pytest.mark.parametrize("body", [None, {}, {"job_id": ""}])
def test_cancel_without_a_job_id_is_a_422(
    http: httpx.Client, schemas: Schemas, body: dict[str, str] | None
) -> None:
    errors = _validation_error(http.post(CANCEL, json=body), schemas, CANCEL, "POST")
    assert errors[0]["loc"] == ["query", "job_id"]


@pytest.mark.parametrize("job_id", [UNKNOWN_UUID, "run_xyz789"])
def test_cancel_of_an_unknown_run_is_a_404(http: httpx.Client, job_id: str) -> None:
    response = http.post(CANCEL, params={"job_id": job_id})
    assert response.status_code == 404
    assert response.json() == {"detail": "Workflow run not found"}


# ---- GET /workflows/runs/{run_id}/results/download-links ---------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_download_links_validate_in_every_format(
    emulator: Emulator, http: httpx.Client, schemas: Schemas, fmt: str
) -> None:
    job_id = start_run(http, companies(2), save_json="true", result_formats=["csv", "ndjson"])
    finish(emulator)
    body = links(http, job_id, fmt)
    schemas.check_response(LINKS, "GET", body)
    (item,) = body
    assert item["filename"].endswith(f".{fmt}")
    assert item["block_number"] == 2
    assert item["download_expires_in_seconds"] == 900
    _timestamp(item["created_at"])


@pytest.mark.parametrize(
    ("fmt", "detail_start"),
    [
        ("json", "format=json requires"),
        ("ndjson", "format=ndjson requires"),
        ("xml", "Unsupported format"),
    ],
)
def test_download_links_in_a_format_the_run_did_not_save_is_a_400(
    emulator: Emulator, http: httpx.Client, fmt: str, detail_start: str
) -> None:
    job_id = start_run(http, companies(1))
    finish(emulator)
    response = http.get(LINKS.format(run_id=job_id), params={"format": fmt})
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail_start)


def test_download_links_of_an_unfinished_run_lists_the_files_produced_so_far(
    emulator: Emulator, http: httpx.Client
) -> None:
    job_id = start_run(http, companies(2), workflow_id=Emulator.workflow_id("filter_companies"))
    assert links(http, job_id) == []
    emulator.advance(4)  # webhook and company_enrichment done, filter running
    assert [item["block_number"] for item in links(http, job_id)] == [2]


# ---- GET /workflows and GET /workflows/{id} -----------------------------------------------------


def test_list_workflows_is_lightweight(http: httpx.Client, schemas: Schemas) -> None:
    body = http.get(WORKFLOWS).json()
    schemas.check_response(WORKFLOWS, "GET", body)
    by_name = {item["name"]: item for item in body}
    assert set(BUILTIN_WORKFLOW_NAMES) <= by_name.keys()
    assert all("workflow_definition" not in item for item in body)
    assert by_name["company_enrichment"]["id"] == COMPANY_WF


@pytest.mark.parametrize("name", BUILTIN_WORKFLOW_NAMES)
def test_workflow_detail_has_its_graph(http: httpx.Client, schemas: Schemas, name: str) -> None:
    body = http.get(WORKFLOW.format(workflow_id=Emulator.workflow_id(name))).json()
    schemas.check_response(WORKFLOW, "GET", body)
    graph = body["workflow_definition"]
    blocks = graph["blocks"]
    assert [b["sequence_number"] for b in blocks] == list(range(1, len(blocks) + 1))
    assert [(e["from_block_id"], e["to_block_id"]) for e in graph["edges"]] == [
        (a["block_id"], b["block_id"]) for a, b in itertools.pairwise(blocks)
    ]
    source = blocks[0]
    if name == "read_csv_source":
        assert source["block_name"] == "read_csv"
    else:
        assert source["block_name"] == "webhook"
        assert source["specs"]["input_schema"]["company_name"]["required"] is True


def test_workflow_detail_errors(http: httpx.Client, schemas: Schemas) -> None:
    errors = _validation_error(
        http.get(WORKFLOW.format(workflow_id="wf_abc")), schemas, WORKFLOW, "GET"
    )
    assert errors[0]["loc"] == ["path", "workflow_id"]
    missing = http.get(WORKFLOW.format(workflow_id=UNKNOWN_UUID))
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Workflow not found"}


def test_unknown_paths_and_methods_answer_in_json(http: httpx.Client) -> None:
    assert http.get("/nope").json() == {"detail": "Not Found"}
    response = http.delete(RUNS)
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
