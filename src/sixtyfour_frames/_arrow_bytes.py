"""The bytes of an Arrow string column, read in place by numpy.

Several checks and hashes work on the UTF-8 bytes of string arrays (result typing, the join's
key matching, the payload's texts); they all read them the same way, through here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa


def string_bytes(array: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """``(offsets, data)`` of a ``string`` or ``large_string`` array, without copying the text.

    ``offsets`` has ``len(array) + 1`` entries counted from the first value, so value ``i`` is
    ``data[offsets[i]:offsets[i + 1]]``. A null's bytes are whatever the array holds there
    (usually none): callers that care drop nulls first.
    """
    offset_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    _, offset_buffer, data_buffer = array.buffers()[:3]
    raw = np.frombuffer(offset_buffer, offset_type)[array.offset : array.offset + len(array) + 1]
    offsets = raw.astype(np.int64) - raw[0]
    if data_buffer is None:
        return offsets, np.empty(0, np.uint8)
    return offsets, np.frombuffer(data_buffer, np.uint8)[raw[0] : raw[-1]]
