"""``attach``: pick up runs by id from another process, another machine, or after a lost ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from sixtyfour_frames._chunks import cache_scope
from sixtyfour_frames._client import Client
from sixtyfour_frames._enrich import combine_tables, enrich
from sixtyfour_frames._ledger import Ledger
from sixtyfour_frames._payload import ROW_KEY


def attach(
    run_ids: str | Sequence[str],
    frame: Any = None,
    workflow_id: str | None = None,
    *,
    client: Client | None = None,
    ledger: Ledger | None = None,
    timeout: float | None = None,
    **options: Any,
) -> Any:
    """Wait for the given runs, store their rows in the ledger, and return the result.

    Without ``frame``: the runs' combined output as a ``pyarrow.Table``. With ``frame`` (the same
    frame the runs were started for): the enriched frame, exactly as ``enrich`` would return it —
    rows the runs hold come from the ledger, so nothing is paid twice; rows they do not hold are
    sent in new runs.
    """
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    own_client, own_ledger = client is None, ledger is None
    api = client or Client()
    book = ledger or Ledger()
    try:
        tables = []
        for job_id in ids:
            status = api.wait(job_id, timeout=timeout)
            table = book.load_results(job_id)
            if table is None:
                table = api.download_results(job_id)
                book.store_results(job_id, table)
            workflow_id = workflow_id or status.workflow_id
            if ROW_KEY in table.column_names:
                keys = [k for k in table.column(ROW_KEY).to_pylist() if k]
                scope = cache_scope(
                    workflow_id, options.get("specs_override"), base_url=api.base_url
                )
                book.cache_put(scope, keys, job_id)
            tables.append(table)
        if frame is None:
            result: pa.Table = combine_tables(tables)
            return result
        return enrich(frame, workflow_id or "", client=api, ledger=book, **options)
    finally:
        if own_client:
            api.close()
        if own_ledger:
            book.close()
