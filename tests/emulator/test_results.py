"""Result files: RFC 4180 CSV, JSON, NDJSON, inline rows, signed URLs that expire, synthetic data."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import httpx
import pytest

from sixtyfour_frames.emulator import Emulator

from ._support import LEAD_WF, TLS, companies, finish, links, start_run

COMPANY_COLUMNS = [
    "domain",
    "industry",
    "employee_count",
    "founded_year",
    "hq_city",
    "linkedin_url",
    "description",
]


def _download(url: str) -> bytes:
    response = httpx.get(url, verify=TLS)
    assert response.status_code == 200, response.text
    return response.content


def _csv_rows(content: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(content.decode("utf-8"), newline=""))
    return list(reader.fieldnames or []), list(reader)


def _final(
    emulator: Emulator, http: httpx.Client, records: Any, workflow: str, **params: Any
) -> list[dict[str, Any]]:
    job_id = start_run(http, records, workflow_id=Emulator.workflow_id(workflow), **params)
    finish(emulator)
    return links(http, job_id)


def test_csv_keeps_every_input_field_in_order_then_the_new_columns(
    emulator: Emulator, http: httpx.Client
) -> None:
    records = [
        {"note": "first", "company_name": "Acme", "__sixtyfour_row": 7, "extra": {"a": [1, 2]}}
    ]
    (item,) = _final(emulator, http, records, "company_enrichment")
    header, rows = _csv_rows(_download(item["download_url"]))
    assert header == ["note", "company_name", "__sixtyfour_row", "extra", *COMPANY_COLUMNS]
    assert rows[0]["__sixtyfour_row"] == "7"
    assert rows[0]["extra"] == '{"a":[1,2]}'
    assert rows[0]["note"] == "first"


def test_csv_is_rfc_4180_with_multi_line_quoted_cells(
    emulator: Emulator, http: httpx.Client
) -> None:
    (item,) = _final(emulator, http, companies(30), "company_enrichment")
    content = _download(item["download_url"])
    assert not content.startswith(b"\xef\xbb\xbf")
    assert content.endswith(b"\r\n")
    _, rows = _csv_rows(content)
    assert len(rows) == item["row_count"] == 30
    descriptions = [row["description"] for row in rows]
    assert all("," in text for text in descriptions)
    multi_line = [text for text in descriptions if "\n" in text]
    assert multi_line, "some descriptions span lines"
    assert any('"' in text for text in multi_line)
    assert b'""' in content  # embedded quotes are doubled
    assert re.search(rb"[^\r]\n", content)  # a cell's own line break is a bare LF inside quotes


def test_inline_results_match_the_file(emulator: Emulator, http: httpx.Client) -> None:
    (item,) = _final(emulator, http, companies(5), "company_enrichment")
    _, rows = _csv_rows(_download(item["download_url"]))
    inline = item["results"]
    assert len(inline) == 5
    assert [row["domain"] for row in rows] == [row["domain"] for row in inline]
    assert [int(row["employee_count"]) for row in rows] == [row["employee_count"] for row in inline]


@pytest.mark.parametrize(("count", "inline"), [(50, True), (51, False)])
def test_inline_results_only_for_small_files(
    emulator: Emulator, http: httpx.Client, count: int, inline: bool
) -> None:
    (item,) = _final(emulator, http, companies(count), "company_enrichment")
    assert (item["results"] is not None) is inline
    assert item["row_count"] == count


def test_json_and_ndjson_files(emulator: Emulator, http: httpx.Client) -> None:
    job_id = start_run(http, companies(3), save_json="true", result_formats=["csv", "ndjson"])
    finish(emulator)
    as_json = json.loads(_download(links(http, job_id, "json")[0]["download_url"]))
    ndjson = _download(links(http, job_id, "ndjson")[0]["download_url"]).decode("utf-8")
    as_ndjson = [json.loads(line) for line in ndjson.splitlines()]
    assert as_json == as_ndjson
    assert [row["__sixtyfour_row"] for row in as_json] == [0, 1, 2]
    assert isinstance(as_json[0]["employee_count"], int)
    assert ndjson.endswith("\n")


def test_result_formats_json_also_enables_json(emulator: Emulator, http: httpx.Client) -> None:
    job_id = start_run(http, companies(1), result_formats=["json"])
    finish(emulator)
    assert links(http, job_id, "json")[0]["content_type"] == "application/json"


def test_file_size_and_content_type_describe_the_file(
    emulator: Emulator, http: httpx.Client
) -> None:
    (item,) = _final(emulator, http, companies(4), "company_enrichment")
    content = _download(item["download_url"])
    assert item["file_size"] == len(content)
    assert item["content_type"] == "text/csv"
    assert item["storage_bucket"]
    assert item["download_url"].startswith(f"{emulator.base_url}/files/")


def test_unicode_survives_as_utf8(emulator: Emulator, http: httpx.Client) -> None:
    records = [{"company_name": "Zürich Réseaux 東京", "__sixtyfour_row": 0}]
    (item,) = _final(emulator, http, records, "company_enrichment")
    _, rows = _csv_rows(_download(item["download_url"]))
    assert rows[0]["company_name"] == "Zürich Réseaux 東京"


def test_the_file_route_needs_no_key_and_records_credentials(
    emulator: Emulator, http: httpx.Client
) -> None:
    (item,) = _final(emulator, http, companies(2), "company_enrichment")
    _download(item["download_url"])
    assert emulator.ledger()["file_requests_with_credentials"] == 0
    (clean,) = emulator.requests("file")
    assert not clean.carried_credentials
    assert "x-api-key" not in clean.headers
    httpx.get(item["download_url"], headers={"x-api-key": emulator.api_key}, verify=TLS)
    httpx.get(item["download_url"], headers={"authorization": "Bearer t"}, verify=TLS)
    assert emulator.ledger()["file_requests_with_credentials"] == 2
    assert emulator.ledger()["files_downloaded"] == 3


def test_signed_urls_expire_on_the_emulator_clock(emulator: Emulator, http: httpx.Client) -> None:
    (item,) = _final(emulator, http, companies(2), "company_enrichment")
    assert item["download_expires_in_seconds"] == 900
    emulator.advance(899)
    assert httpx.get(item["download_url"], verify=TLS).status_code == 200
    emulator.advance(1)
    response = httpx.get(item["download_url"], verify=TLS)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/xml")
    assert b"<Code>ExpiredToken</Code>" in response.content


def test_tampered_urls_are_refused(emulator: Emulator, http: httpx.Client) -> None:
    (item,) = _final(emulator, http, companies(2), "company_enrichment")
    url: str = item["download_url"]
    prefix, token, filename = url.rsplit("/", 2)
    payload, signature = token.split(".")
    forged = f"{prefix}/{payload}.{signature[::-1]}/{filename}"
    assert b"SignatureDoesNotMatch" in httpx.get(forged, verify=TLS).content
    renamed = httpx.get(f"{prefix}/{token}/other.csv", verify=TLS)
    assert (renamed.status_code, b"NoSuchKey" in renamed.content) == (404, True)


def test_a_bom_can_be_switched_on() -> None:
    with (
        Emulator(csv_bom=True) as emu,
        httpx.Client(base_url=emu.base_url, headers=emu.headers, verify=TLS) as http,
    ):
        job_id = start_run(http, companies(1))
        (item,) = links(http, job_id)
        content = _download(item["download_url"])
    assert content.startswith(b"\xef\xbb\xbfcompany_name")
    assert item["file_size"] == len(content)


# ---- the built-in workflows' data ------------------------------------------------------------------


def test_values_are_deterministic_and_depend_on_the_seed(
    emulator: Emulator, http: httpx.Client
) -> None:
    first = _final(emulator, http, companies(5), "company_enrichment")[0]["results"]
    again = _final(emulator, http, companies(5), "company_enrichment")[0]["results"]
    assert first == again
    with (
        Emulator(seed=1) as other,
        httpx.Client(base_url=other.base_url, headers=other.headers, verify=TLS) as other_http,
    ):
        job_id = start_run(other_http, companies(5))
        reseeded = links(other_http, job_id)[0]["results"]
    assert [r["company_name"] for r in reseeded] == [r["company_name"] for r in first]
    assert reseeded != first


def test_values_ignore_the_row_key(emulator: Emulator, http: httpx.Client) -> None:
    one = _final(
        emulator, http, [{"company_name": "Acme", "__sixtyfour_row": 1}], "company_enrichment"
    )
    two = _final(
        emulator, http, [{"company_name": "Acme", "__sixtyfour_row": 2}], "company_enrichment"
    )
    assert one[0]["results"][0]["domain"] == two[0]["results"][0]["domain"]


def test_company_to_leads_is_one_to_many(emulator: Emulator, http: httpx.Client) -> None:
    (item,) = _final(emulator, http, companies(20), "company_to_leads")
    per_company: dict[int, int] = {}
    for row in item["results"]:
        per_company[row["__sixtyfour_row"]] = per_company.get(row["__sixtyfour_row"], 0) + 1
        assert row["email"].endswith(row["email"].split("@")[1])
        assert {"full_name", "title", "email", "linkedin_url", "company_name"} <= row.keys()
    counts = [per_company.get(index, 0) for index in range(20)]
    assert set(counts) <= {0, 1, 2, 3}
    assert 0 in counts
    assert max(counts) > 1


def test_filter_companies_drops_small_companies(emulator: Emulator, http: httpx.Client) -> None:
    enriched, filtered = _final(emulator, http, companies(20), "filter_companies")
    assert (enriched["block_number"], filtered["block_number"]) == (2, 3)
    assert 0 < filtered["row_count"] < enriched["row_count"] == 20
    assert all(row["employee_count"] >= 50 for row in filtered["results"])
    kept = {row["__sixtyfour_row"] for row in filtered["results"]}
    expected = {
        row["__sixtyfour_row"] for row in enriched["results"] if row["employee_count"] >= 50
    }
    assert kept == expected


def test_drop_row_key_removes_double_underscore_columns(
    emulator: Emulator, http: httpx.Client
) -> None:
    records = [{"company_name": "Acme", "__sixtyfour_row": 0, "__other": 1, "_single": 2}]
    enriched, final = _final(emulator, http, records, "drop_row_key")
    assert "__sixtyfour_row" in enriched["results"][0]
    header, _ = _csv_rows(_download(final["download_url"]))
    assert header == ["company_name", "_single", *COMPANY_COLUMNS]


def test_lead_enrichment_adds_person_fields_and_a_matching_email(
    emulator: Emulator, http: httpx.Client
) -> None:
    records = [{"full_name": "Grace Hopper", "company_name": "Acme Corp", "__sixtyfour_row": 0}]
    job_id = start_run(http, records, workflow_id=LEAD_WF)
    company = _final(emulator, http, [{"company_name": "Acme Corp"}], "company_enrichment")
    profile, with_email = links(http, job_id)
    person = with_email["results"][0]
    assert list(person)[:3] == ["full_name", "company_name", "__sixtyfour_row"]
    assert {"title", "phone", "linkedin_url", "summary"} <= profile["results"][0].keys()
    assert person["email"] == f"grace.hopper@{company[0]['results'][0]['domain']}"
    assert person["phone"].startswith("+1 ")
