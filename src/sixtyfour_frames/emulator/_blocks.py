"""The built-in synthetic blocks.

A block is a plain function ``list[dict] -> list[dict]`` (see :data:`BlockFn`). The built-in ones
keep every input field of a row, in its order, and add their own columns after it; values are
deterministic functions of the row's business fields (never of ``__``-prefixed keys such as the
row key) and of the emulator's seed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sixtyfour_frames.emulator import _synthetic as syn

Record = dict[str, Any]
BlockFn = Callable[[list[Record]], list[Record]]
"""A block's work: receives the rows produced by the previous block, returns its own rows."""

FILTER_MIN_EMPLOYEES = 50
ROW_KEY_PREFIX = "__"


@dataclass(frozen=True)
class BuiltinBlock:
    """How to build one kind of built-in block for a seed, and how it presents itself."""

    block_name: str
    block_type: str
    dataframe_type: str
    make: Callable[[int], BlockFn]
    specs: dict[str, Any] = field(default_factory=dict)
    adds: tuple[str, ...] = ()


def _text(row: Record, key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value)


def company_enrichment(seed: int) -> BlockFn:
    """Adds domain, industry, employee_count, founded_year, hq_city, linkedin_url, description."""

    def enrich(rows: list[Record]) -> list[Record]:
        return [{**row, **_company_fields(_text(row, "company_name"), seed)} for row in rows]

    return enrich


# A pure function of its arguments, and company names repeat across rows and runs: cached, it
# keeps the emulator's answer to a POST of thousands of records to a few milliseconds.
@functools.lru_cache(maxsize=1 << 16)
def _company_fields(company: str, seed: int) -> Record:
    return {
        "domain": syn.company_domain(company, seed),
        "industry": syn.pick(syn.INDUSTRIES, seed, "industry", company),
        "employee_count": syn.pick(syn.EMPLOYEE_COUNTS, seed, "employees", company),
        "founded_year": 1950 + syn.digest(seed, "founded", company) % 75,
        "hq_city": syn.pick(syn.CITIES, seed, "city", company),
        "linkedin_url": "https://www.linkedin.com/company/"
        + (syn.slug(company, separator="-") or "unknown"),
        "description": syn.company_description(company, seed),
    }


def lead_enrichment(seed: int) -> BlockFn:
    """Adds title, phone, linkedin_url and a (sometimes multi-line) summary for each person."""

    def enrich(rows: list[Record]) -> list[Record]:
        return [{**row, **_lead_fields(row, seed)} for row in rows]

    return enrich


def _lead_fields(row: Record, seed: int) -> Record:
    company = _text(row, "company_name")
    first, last = syn.split_full_name(_text(row, "full_name"))
    title = syn.pick(syn.TITLES, seed, "title", first, last, company)
    return {
        "title": title,
        "phone": syn.phone_number(seed, first, last, company),
        "linkedin_url": syn.person_linkedin_url(first, last, seed),
        "summary": syn.person_summary(first, last, title, company, seed),
    }


def find_email(seed: int) -> BlockFn:
    """Adds a work ``email`` built from the person's name and the company's domain."""

    def enrich(rows: list[Record]) -> list[Record]:
        return [{**row, "email": _work_email(row, seed)} for row in rows]

    return enrich


def _work_email(row: Record, seed: int) -> str:
    first, last = syn.split_full_name(_text(row, "full_name"))
    return syn.email_address(first, last, syn.company_domain(_text(row, "company_name"), seed))


def company_to_leads(seed: int) -> BlockFn:
    """One-to-many: 0 to 3 people per company, each row repeating the company's fields."""

    def expand(rows: list[Record]) -> list[Record]:
        return [lead for row in rows for lead in _leads_of(row, seed)]

    return expand


def _leads_of(row: Record, seed: int) -> list[Record]:
    company = _text(row, "company_name")
    domain = syn.company_domain(company, seed)
    leads = []
    for index in range(syn.digest(seed, "lead_count", company) % 4):
        first, last = syn.person_name(seed, company, index)
        leads.append(
            {
                **row,
                "full_name": f"{first} {last}",
                "title": syn.pick(syn.TITLES, seed, "title", company, index),
                "email": syn.email_address(first, last, domain),
                "linkedin_url": syn.person_linkedin_url(first, last, seed),
            }
        )
    return leads


def filter_small_companies(seed: int) -> BlockFn:
    """Keeps rows whose ``employee_count`` is a number ≥ 50; drops the others."""
    del seed  # the rule is fixed; the seed only changes which companies are small

    def keep_large(rows: list[Record]) -> list[Record]:
        return [row for row in rows if _employee_count(row) >= FILTER_MIN_EMPLOYEES]

    return keep_large


def _employee_count(row: Record) -> float:
    value = row.get("employee_count")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("-inf")
    return float(value)


def remove_row_key_columns(seed: int) -> BlockFn:
    """Drops every column whose name starts with ``__`` (the row key included)."""
    del seed

    def remove(rows: list[Record]) -> list[Record]:
        return [{k: v for k, v in row.items() if not k.startswith(ROW_KEY_PREFIX)} for row in rows]

    return remove


def synthetic_companies(seed: int, resource_handle_id: str, count: int = 5) -> list[Record]:
    """The rows a ``read_csv`` source "reads" from an uploaded file: made-up companies."""
    names = []
    for index in range(count):
        first, last = syn.person_name(seed, "csv", resource_handle_id, index)
        names.append({"company_name": f"{last} & {first} Labs"})
    return names


BUILTIN_BLOCKS: dict[str, BuiltinBlock] = {
    block.block_name: block
    for block in (
        BuiltinBlock(
            "company_enrichment",
            "enrich",
            "COMPANY",
            company_enrichment,
            {"struct": ["domain", "industry", "employee_count", "founded_year", "hq_city"]},
            (
                "domain",
                "industry",
                "employee_count",
                "founded_year",
                "hq_city",
                "linkedin_url",
                "description",
            ),
        ),
        BuiltinBlock(
            "lead_enrichment",
            "enrich",
            "LEAD",
            lead_enrichment,
            {"struct": ["title", "phone", "linkedin_url", "summary"]},
            ("title", "phone", "linkedin_url", "summary"),
        ),
        BuiltinBlock(
            "find_email", "enrich", "LEAD", find_email, {"mode": "PROFESSIONAL"}, ("email",)
        ),
        BuiltinBlock(
            "company_to_leads",
            "enrich",
            "LEAD",
            company_to_leads,
            {"max_leads_per_company": 3},
            ("full_name", "title", "email", "linkedin_url"),
        ),
        BuiltinBlock(
            "filter",
            "transform",
            "COMPANY",
            filter_small_companies,
            {"column": "employee_count", "operator": ">=", "value": FILTER_MIN_EMPLOYEES},
        ),
        BuiltinBlock(
            "remove_columns",
            "transform",
            "COMPANY",
            remove_row_key_columns,
            {"columns_starting_with": ROW_KEY_PREFIX},
        ),
    )
}
