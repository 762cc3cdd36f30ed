"""Workflow definitions: the built-in catalogue and user-defined workflows.

A workflow is a source block (``webhook`` for API-triggered runs, or ``read_csv``) followed by
steps that each turn a list of rows into a list of rows. Workflow ids are UUIDv5 of a fixed
namespace and the workflow's name, so ``Emulator.workflow_id("company_enrichment")`` is the same
in every process and every test run.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sixtyfour_frames.emulator._blocks import BUILTIN_BLOCKS, BlockFn

WORKFLOW_NAMESPACE = uuid.UUID("0c7d5a52-64f0-5a8e-9b1c-5e7f2a1d3b90")
WEBHOOK = "webhook"
READ_CSV = "read_csv"

COMPANY_COLUMNS = ("company_name",)
LEAD_COLUMNS = ("full_name", "company_name")
FAILING_BLOCK_MESSAGE = (
    "company_enrichment failed: the upstream data provider returned an error (synthetic failure)"
)


def workflow_id_for(name: str) -> str:
    """The fixed id of the workflow called ``name`` (UUIDv5 under the emulator's namespace)."""
    return str(uuid.uuid5(WORKFLOW_NAMESPACE, name))


@dataclass(frozen=True)
class Block:
    """One step of a custom workflow (see ``Emulator.add_workflow``).

    ``transform`` receives the rows produced by the previous block (a fresh copy: mutating it is
    harmless) and returns this block's rows. Rows are plain dicts of JSON values. Raising an
    exception makes the run fail at this block, with the exception's text as ``error_message``.
    ``name`` is the ``block_name`` shown in live status and workflow definitions (default: the
    function's ``__name__``).
    """

    transform: BlockFn
    name: str | None = None
    block_type: str = "enrich"
    dataframe_type: str = "COMPANY"
    specs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def block_name(self) -> str:
        """The name shown for this block."""
        return self.name or str(getattr(self.transform, "__name__", "custom_block"))


@dataclass(frozen=True)
class Step:
    """A block after the source, as the run engine sees it."""

    block_name: str
    block_type: str
    dataframe_type: str
    specs: Mapping[str, Any]
    transform: BlockFn
    failure: str | None = None  # when set, the block always fails with this error_message


@dataclass(frozen=True)
class Source:
    """The first block: where a run's input rows come from."""

    block_name: str
    dataframe_type: str
    required_columns: tuple[str, ...] = ()
    optional_columns: tuple[str, ...] = ()

    def specs(self) -> dict[str, Any]:
        """The block's specs as ``GET /workflows/{id}`` shows them."""
        if self.block_name != WEBHOOK:
            return {"resource_handle_id": None}
        schema = {name: {"type": "string", "required": True} for name in self.required_columns}
        schema.update(
            {name: {"type": "string", "required": False} for name in self.optional_columns}
        )
        return {"input_schema": schema, "dataframe_type": self.dataframe_type}


@dataclass(frozen=True)
class Workflow:
    """A runnable workflow: an id, a name, a source and its steps."""

    id: str
    name: str
    description: str
    source: Source
    steps: tuple[Step, ...]
    created_at: float

    @property
    def blocks_count(self) -> int:
        """Source block included."""
        return 1 + len(self.steps)

    def block_id(self, sequence_number: int) -> str:
        """A stable id for the block at ``sequence_number`` (1 = the source)."""
        return str(uuid.uuid5(uuid.UUID(self.id), f"block-{sequence_number}"))

    def block_name(self, sequence_number: int) -> str:
        """The ``block_name`` at ``sequence_number`` (1 = the source)."""
        if sequence_number == 1:
            return self.source.block_name
        return self.steps[sequence_number - 2].block_name

    def dataframe_type(self, sequence_number: int) -> str:
        """``COMPANY`` or ``LEAD``: the kind of rows the block produces."""
        if sequence_number == 1:
            return self.source.dataframe_type
        return self.steps[sequence_number - 2].dataframe_type


def builtin_step(block_name: str, seed: int, *, failure: str | None = None) -> Step:
    """A step made from a built-in block (see ``_blocks.BUILTIN_BLOCKS``)."""
    try:
        builtin = BUILTIN_BLOCKS[block_name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_BLOCKS))
        raise ValueError(f"unknown built-in block {block_name!r}; known: {known}") from None
    return Step(
        block_name=builtin.block_name,
        block_type=builtin.block_type,
        dataframe_type=builtin.dataframe_type,
        specs=builtin.specs,
        transform=builtin.make(seed),
        failure=failure,
    )


def _webhook(dataframe_type: str, required: tuple[str, ...], optional: tuple[str, ...]) -> Source:
    return Source(WEBHOOK, dataframe_type, required, optional)


_CATALOGUE: tuple[tuple[str, str, Source, tuple[str, ...]], ...] = (
    (
        "company_enrichment",
        "Company enrichment: requires company_name; adds domain, industry, employee_count, "
        "founded_year, hq_city, linkedin_url, description.",
        _webhook("COMPANY", COMPANY_COLUMNS, ("website",)),
        ("company_enrichment",),
    ),
    (
        "lead_enrichment",
        "Lead enrichment with find_email: requires full_name and company_name; adds title, "
        "phone, linkedin_url, summary, then email.",
        _webhook("LEAD", LEAD_COLUMNS, ("linkedin_url",)),
        ("lead_enrichment", "find_email"),
    ),
    (
        "company_to_leads",
        "One-to-many: requires company_name; returns 0 to 3 people per company with full_name, "
        "title, email, linkedin_url.",
        _webhook("COMPANY", COMPANY_COLUMNS, ()),
        ("company_to_leads",),
    ),
    (
        "filter_companies",
        "Company enrichment, then a filter keeping companies with employee_count >= 50 "
        "(two result files; the last is the filtered output). Requires company_name.",
        _webhook("COMPANY", COMPANY_COLUMNS, ()),
        ("company_enrichment", "filter"),
    ),
    (
        "drop_row_key",
        "Company enrichment, then remove_columns dropping every column whose name starts with "
        "'__' (the row key included). Requires company_name.",
        _webhook("COMPANY", COMPANY_COLUMNS, ()),
        ("company_enrichment", "remove_columns"),
    ),
    (
        "failing",
        "Always fails at its second block (company_enrichment) with error_message and "
        "status_reason set; produces no result file. Requires company_name.",
        _webhook("COMPANY", COMPANY_COLUMNS, ()),
        ("company_enrichment", "filter"),
    ),
    (
        "read_csv_source",
        "Starts with a read_csv block, not webhook: webhook_payload is rejected with 400; "
        "runs only with specs_override.resource_handle_id (then reads 5 synthetic companies).",
        Source(READ_CSV, "COMPANY"),
        ("company_enrichment",),
    ),
)

BUILTIN_WORKFLOW_NAMES: tuple[str, ...] = tuple(name for name, *_ in _CATALOGUE)


def builtin_workflows(seed: int, created_at: float) -> list[Workflow]:
    """The built-in catalogue, its synthetic values drawn under ``seed``."""
    workflows = []
    for name, description, source, block_names in _CATALOGUE:
        steps = []
        for index, block_name in enumerate(block_names):
            failure = FAILING_BLOCK_MESSAGE if name == "failing" and index == 0 else None
            steps.append(builtin_step(block_name, seed, failure=failure))
        workflows.append(
            Workflow(workflow_id_for(name), name, description, source, tuple(steps), created_at)
        )
    return workflows


BlockSpec = BlockFn | Block | str


def custom_workflow(
    name: str,
    blocks: Sequence[BlockSpec],
    *,
    seed: int,
    created_at: float,
    workflow_id: str | None = None,
    required_columns: Sequence[str] = (),
    dataframe_type: str = "COMPANY",
    description: str | None = None,
) -> Workflow:
    """A user-defined workflow: a ``webhook`` source followed by ``blocks``.

    Each item of ``blocks`` is a :class:`Block`, a bare function ``list[dict] -> list[dict]``,
    or the name of a built-in block (``company_enrichment``, ``lead_enrichment``, ``find_email``,
    ``company_to_leads``, ``filter``, ``remove_columns``).
    """
    if not blocks:
        raise ValueError("a workflow needs at least one block after its webhook source")
    resolved_id = workflow_id or workflow_id_for(name)
    uuid.UUID(resolved_id)  # ids must be UUIDs: the API's path parameter is format: uuid
    steps = tuple(_step_of(block, seed) for block in blocks)
    source = _webhook(dataframe_type, tuple(required_columns), ())
    text = description or f"Custom workflow {name!r}"
    return Workflow(resolved_id, name, text, source, steps, created_at)


def _step_of(block: BlockSpec, seed: int) -> Step:
    if isinstance(block, str):
        return builtin_step(block, seed)
    if isinstance(block, Block):
        return Step(
            block.block_name, block.block_type, block.dataframe_type, block.specs, block.transform
        )
    if callable(block):
        return _step_of(Block(transform=block), seed)
    raise TypeError(f"a block must be a Block, a function or a built-in block name, not {block!r}")
