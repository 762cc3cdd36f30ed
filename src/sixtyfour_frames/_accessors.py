"""``.sixtyfour`` on pandas and Polars frames: a thin door into :mod:`sixtyfour_frames._enrich`."""

from __future__ import annotations

import importlib.util
from typing import Any

from sixtyfour_frames._enrich import EnrichJob, enrich, start
from sixtyfour_frames._preview import Preview, preview

NAMESPACE = "sixtyfour"


class SixtyfourNamespace:
    """``df.sixtyfour``: enrich, start and preview for this frame."""

    def __init__(self, frame: Any) -> None:
        self._frame = frame

    def enrich(self, workflow_id: str, **kwargs: Any) -> Any:
        """The frame with the workflow's new columns attached (see ``sixtyfour_frames.enrich``)."""
        return enrich(self._frame, workflow_id, **kwargs)

    def start(self, workflow_id: str, **kwargs: Any) -> EnrichJob:
        """Start the runs and return at once: ``job.wait()``, ``job.result()``, ``job.cancel()``."""
        return start(self._frame, workflow_id, **kwargs)

    def preview(self, workflow_id: str, **kwargs: Any) -> Preview:
        """What would be sent and paid for; no API call."""
        return preview(self._frame, workflow_id, **kwargs)


def register_accessors() -> list[str]:
    """Register ``.sixtyfour`` on whichever of pandas and Polars is installed."""
    registered = []
    if importlib.util.find_spec("pandas") is not None:
        import pandas as pd

        if not hasattr(pd.DataFrame, NAMESPACE):
            pd.api.extensions.register_dataframe_accessor(NAMESPACE)(SixtyfourNamespace)
        registered.append("pandas.DataFrame")
    if importlib.util.find_spec("polars") is not None:
        import polars as pl

        if not hasattr(pl.DataFrame, NAMESPACE):
            pl.api.register_dataframe_namespace(NAMESPACE)(SixtyfourNamespace)
            pl.api.register_lazyframe_namespace(NAMESPACE)(SixtyfourNamespace)
        registered += ["polars.DataFrame", "polars.LazyFrame"]
    return registered
