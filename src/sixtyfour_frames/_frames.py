"""What kind of frame the caller gave, and how to hand the same kind back."""

from __future__ import annotations

import sys
from typing import Any, Literal

from sixtyfour_frames._errors import InvalidArgumentError

FrameKind = Literal["pandas", "polars", "polars_lazy"]


def frame_kind(frame: object) -> FrameKind:
    """Recognise a frame without importing a library the caller does not use."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(frame, pandas.DataFrame):
        return "pandas"
    polars = sys.modules.get("polars")
    if polars is not None:
        if isinstance(frame, polars.LazyFrame):
            return "polars_lazy"
        if isinstance(frame, polars.DataFrame):
            return "polars"
    raise InvalidArgumentError(
        f"expected a pandas.DataFrame, polars.DataFrame or polars.LazyFrame, got {type(frame).__name__}."
    )


def eager(frame: Any) -> Any:
    """A LazyFrame is collected here, once, explicitly: the remote call never hides in a plan."""
    return frame.collect() if frame_kind(frame) == "polars_lazy" else frame


def like_input(result: Any, kind: FrameKind) -> Any:
    return result.lazy() if kind == "polars_lazy" else result


def attach_report(frame: Any, report: dict[str, Any]) -> None:
    """pandas keeps the report in ``df.attrs["sixtyfour"]``; Polars has no attrs (use the job)."""
    if frame_kind(frame) == "pandas":
        frame.attrs["sixtyfour"] = report
