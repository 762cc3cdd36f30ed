"""User-defined workflows: Python callables (or built-in block names) after a webhook source."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from sixtyfour_frames.emulator import Block, Emulator

from ._support import finish, links, live, start_run

Rows = list[dict[str, Any]]


def score(rows: Rows) -> Rows:
    """A custom block: adds a score per row."""
    return [{**row, "score": len(str(row.get("company_name", "")))} for row in rows]


def explode(rows: Rows) -> Rows:
    raise ValueError("provider unavailable")


def test_a_function_becomes_a_block(emulator: Emulator, http: httpx.Client) -> None:
    workflow_id = emulator.add_workflow("scoring", [score], required_columns=["company_name"])
    assert workflow_id == Emulator.workflow_id("scoring")
    job_id = start_run(
        http, [{"company_name": "Acme", "__sixtyfour_row": 0}], workflow_id=workflow_id
    )
    finish(emulator)
    (item,) = links(http, job_id)
    assert item["results"] == [{"company_name": "Acme", "__sixtyfour_row": 0, "score": 4}]
    detail = http.get(f"/workflows/{workflow_id}").json()
    names = [b["block_name"] for b in detail["workflow_definition"]["blocks"]]
    assert names == ["webhook", "score"]
    assert detail["name"] == "scoring"
    assert "scoring" in [w["name"] for w in http.get("/workflows").json()]


def test_blocks_mix_functions_block_objects_and_built_in_names(
    emulator: Emulator, http: httpx.Client
) -> None:
    workflow_id = emulator.add_workflow(
        "mixed",
        [
            "company_enrichment",
            Block(score, name="rank_companies", block_type="transform", dataframe_type="COMPANY"),
            "remove_columns",
        ],
    )
    job_id = start_run(
        http, [{"company_name": "Acme", "__sixtyfour_row": 0}], workflow_id=workflow_id
    )
    finish(emulator)
    files = links(http, job_id)
    assert [f["block_number"] for f in files] == [2, 3, 4]
    assert files[1]["filename"].endswith("_block3_rank_companies.csv")
    final = files[-1]["results"][0]
    assert "__sixtyfour_row" not in final
    assert {"domain", "score"} <= final.keys()


def test_a_raising_block_fails_the_run_there(emulator: Emulator, http: httpx.Client) -> None:
    workflow_id = emulator.add_workflow("exploding", [score, explode])
    job_id = start_run(http, [{"company_name": "Acme"}], workflow_id=workflow_id)
    finish(emulator)
    body = live(http, job_id)
    assert body["overall_status"] == "failed"
    assert body["blocks"][2]["error_message"] == "ValueError: provider unavailable"
    assert [f["block_number"] for f in links(http, job_id)] == [2]


def test_a_block_returning_something_else_fails_the_run(
    emulator: Emulator, http: httpx.Client
) -> None:
    def not_a_list(rows: Rows) -> Any:
        return {"not": "a list"}

    workflow_id = emulator.add_workflow("broken", [not_a_list])
    job_id = start_run(http, [{"company_name": "Acme"}], workflow_id=workflow_id)
    finish(emulator)
    assert "list of dicts" in live(http, job_id)["blocks"][1]["error_message"]


def test_blocks_cannot_change_the_recorded_input(emulator: Emulator, http: httpx.Client) -> None:
    def mutate(rows: Rows) -> Rows:
        for row in rows:
            row["company_name"] = "changed"
        return rows

    workflow_id = emulator.add_workflow("mutating", [mutate])
    job_id = start_run(http, [{"company_name": "Acme"}], workflow_id=workflow_id)
    assert emulator.run_input(job_id) == [{"company_name": "Acme"}]


def test_required_columns_are_enforced(emulator: Emulator, http: httpx.Client) -> None:
    workflow_id = emulator.add_workflow("needs_email", [score], required_columns=["email"])
    response = http.post(
        "/workflows/run", params={"workflow_id": workflow_id}, json={"webhook_payload": [{"x": 1}]}
    )
    assert response.status_code == 400
    assert "email" in response.json()["detail"]


def test_a_workflow_id_can_be_chosen(emulator: Emulator) -> None:
    chosen = str(uuid.uuid4())
    assert emulator.add_workflow("chosen", [score], workflow_id=chosen) == chosen


@pytest.mark.parametrize(
    ("blocks", "options", "error"),
    [
        ([], {}, ValueError),
        (["no_such_block"], {}, ValueError),
        ([42], {}, TypeError),
        ([score], {"workflow_id": "wf_not_a_uuid"}, ValueError),
    ],
)
def test_bad_workflows_are_refused(
    emulator: Emulator, blocks: list[Any], options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        emulator.add_workflow("bad", blocks, **options)


def test_workflow_ids_are_fixed_uuids() -> None:
    first = Emulator.workflow_id("company_enrichment")
    assert first == Emulator().workflow_id("company_enrichment")
    assert str(uuid.UUID(first)) == first
    assert len({Emulator.workflow_id(n) for n in ("a", "b", "company_enrichment")}) == 3
