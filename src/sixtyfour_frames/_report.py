"""``RunReport``: what one enrich call did, in figures a user can check against their bill."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunInfo:
    """One run of the call (or a run reused from the ledger)."""

    job_id: str
    rows: int  # records sent in this run
    status: str
    source: str  # "new" (started now), "reattached" (started by an earlier call) or "ledger"
    error: str | None = None


@dataclass
class RunReport:
    """Figures for one enrich call; also in ``df.attrs["sixtyfour"]`` (pandas) as a dict."""

    workflow_id: str
    rows_in: int = 0  # rows of the caller's frame
    rows_unique: int = 0  # distinct records among them
    rows_deduplicated: int = 0  # rows that shared a record with an earlier row: not sent twice
    rows_cached: int = 0  # distinct records served from the ledger's row cache
    rows_sent: int = 0  # distinct records in runs started by this call (what it paid for)
    rows_reattached: int = 0  # distinct records in runs an earlier call had started
    rows_matched: int = 0  # caller rows that received output
    rows_missing: int = 0  # caller rows that received none (new columns are null)
    rows_failed: int = 0  # caller rows whose run failed (errors="keep")
    output_rows: int = 0
    output_extra: int = 0
    output_duplicated: int = 0
    new_columns: tuple[str, ...] = ()
    runs: list[RunInfo] = field(default_factory=list)
    cached_from_runs: tuple[str, ...] = ()  # the earlier runs whose stored rows were reused
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    @property
    def run_ids(self) -> list[str]:
        return [run.job_id for run in self.runs]

    @property
    def runs_started(self) -> int:
        return sum(1 for run in self.runs if run.source == "new")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["new_columns"] = list(self.new_columns)
        data["cached_from_runs"] = list(self.cached_from_runs)
        return data

    def summary(self) -> str:
        """One paragraph for logs and the CLI."""
        runs = ", ".join(f"{r.job_id} ({r.status}, {r.source})" for r in self.runs) or "none"
        return (
            f"{self.rows_in} rows → {self.rows_unique} unique → {self.rows_cached} from the ledger → "
            f"{self.rows_sent} sent in {self.runs_started} new run(s); "
            f"{self.rows_matched} rows matched, {self.rows_missing} without output, "
            f"{self.output_extra} extra and {self.output_duplicated} duplicated output rows; "
            f"new columns: {', '.join(self.new_columns) or 'none'}; runs: {runs}."
        )
