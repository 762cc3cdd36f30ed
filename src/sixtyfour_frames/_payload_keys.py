"""Content-addressed row keys: an 80-bit hash of each record's canonical JSON text.

Why not ``hashlib``: one ``blake2b`` call per row costs about a microsecond of Python, which is
most of the time budget for a million rows. This hash is built so that numpy can compute it for
all records at once, word by word, with no per-row Python, and it is defined here in plain
Python too (:func:`record_key`) so that the vectorised code has a reference to be tested
against and the key never depends on the library that computed it.

Definition (all arithmetic modulo 2**64):

* ``data`` is the UTF-8 text, zero-padded to a multiple of 8 bytes; ``w[j]`` is its ``j``-th
  8-byte little-endian word, ``n`` the unpadded length in bytes;
* ``mix`` is MurmurHash3's 64-bit finaliser (a bijection with full avalanche);
* two lanes ``i`` with their own constants: ``A_i = Σ_j mix(w[j] ^ (SEED_i + j * STEP_i))`` and
  ``h_i = mix(A_i ^ (n * LENGTH_i))``;
* the key is ``"k"`` + ``h_1`` in 16 hex digits + the top 16 bits of ``h_2`` in 4 hex digits.

A record that differs in one word always changes ``A_i`` (``mix`` is a bijection and the word's
position is mixed in); larger differences collide with probability about 2**-80. The key starts
with a letter so that no CSV reader mistakes it for a number. It is the same in every process,
on every platform, and for pandas and Polars input alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

KEY_LENGTH: Final = 21  # "k" + 20 hex digits
_MASK: Final = (1 << 64) - 1
_MIX_1: Final = 0xFF51AFD7ED558CCD
_MIX_2: Final = 0xC4CEB9FE1A85EC53
_LANES: Final = (
    # (SEED, STEP, LENGTH): arbitrary odd constants (fractional digits of sqrt(2), pi, e, sqrt(3)).
    (0x6A09E667F3BCC909, 0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B),
    (0x3C6EF372FE94F82B, 0xD6E8FEB86659FD93, 0xA54FF53A5F1D36F1),
)


# ---------------------------------------------------------------------------------------------
# Reference (pure Python): used without numpy, and by the tests as the definition
# ---------------------------------------------------------------------------------------------


def _mix(value: int) -> int:
    value ^= value >> 33
    value = (value * _MIX_1) & _MASK
    value ^= value >> 33
    value = (value * _MIX_2) & _MASK
    return value ^ (value >> 33)


def record_key(text: str) -> str:
    """The key of one record's canonical JSON text (the definition; slow)."""
    data = text.encode("utf-8")
    padded = data + b"\0" * (-len(data) % 8)
    words = [int.from_bytes(padded[i : i + 8], "little") for i in range(0, len(padded), 8)]
    lanes = []
    for seed, step, length in _LANES:
        total = 0
        for position, word in enumerate(words):
            total += _mix(word ^ ((seed + position * step) & _MASK))
        lanes.append(_mix((total & _MASK) ^ ((len(data) * length) & _MASK)))
    return f"k{lanes[0]:016x}{lanes[1] >> 48:04x}"


# ---------------------------------------------------------------------------------------------
# Vectorised (numpy): every record at once
# ---------------------------------------------------------------------------------------------


_BLOCK_WORDS: Final = 1 << 15  # 256 KiB per scratch array: stays in cache, allocated once


def hash_padded(
    data: Any, offsets: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Both lanes for records stored back to back in ``data``, each zero-padded to 8 bytes.

    ``offsets`` has one entry more than there are records (Arrow layout) and every offset is a
    multiple of 8; ``lengths`` are the unpadded byte lengths. Records are processed in blocks
    of about ``_BLOCK_WORDS`` words so that the scratch arrays stay small and are reused.
    """
    import numpy as np

    base = int(offsets[0])
    words = np.frombuffer(data, dtype="<u8", count=(int(offsets[-1]) - base) // 8, offset=base)
    word_offsets = (offsets - base) // 8
    results = (np.empty(lengths.size, np.uint64), np.empty(lengths.size, np.uint64))
    scratch = _Scratch(_BLOCK_WORDS)
    first = 0
    while first < lengths.size:
        last = int(np.searchsorted(word_offsets, word_offsets[first] + _BLOCK_WORDS, "right")) - 1
        last = max(last, first + 1)  # a record longer than a block gets a block of its own
        block = slice(int(word_offsets[first]), int(word_offsets[last]))
        starts = word_offsets[first:last] - word_offsets[first]
        for lane, out in zip(_LANES, results, strict=True):
            out[first:last] = _lane(words[block], starts, lengths[first:last], lane, scratch)
        first = last
    return results


class _Scratch:
    """Reusable arrays: fresh large allocations cost more than the arithmetic itself."""

    def __init__(self, size: int) -> None:
        import numpy as np

        self.size = size
        self.arrays = [np.empty(size, np.uint64) for _ in range(3)]

    def take(self, size: int) -> list[npt.NDArray[np.uint64]]:
        import numpy as np

        if size > self.size:
            self.__init__(size)  # type: ignore[misc]  # grow for one long record
        return [array[:size] for array in self.arrays]


def _lane(
    words: npt.NDArray[np.uint64],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    lane: tuple[int, int, int],
    scratch: _Scratch,
) -> npt.NDArray[np.uint64]:
    import numpy as np

    seed, step, length = lane
    position, mixed, spare = scratch.take(words.size)
    # position of each word inside its record: a running count that restarts at each record
    position[:] = 1
    position[starts[1:]] = (1 - np.diff(starts)).astype(np.uint64)
    position[0] = 0
    np.cumsum(position, out=position)
    np.multiply(position, np.uint64(step), out=mixed)
    mixed += np.uint64(seed)
    mixed ^= words
    _mix_inplace(mixed, spare)
    total = np.add.reduceat(mixed, starts)
    total ^= lengths.astype(np.uint64) * np.uint64(length)
    return _mix_inplace(total, np.empty_like(total))


def _mix_inplace(values: npt.NDArray[np.uint64], scratch: Any) -> npt.NDArray[np.uint64]:
    import numpy as np

    for multiplier in (_MIX_1, _MIX_2, None):
        np.right_shift(values, np.uint64(33), out=scratch)
        values ^= scratch
        if multiplier is not None:
            values *= np.uint64(multiplier)
    return values


_HEX: Final = b"0123456789abcdef"


def key_text(
    first: npt.NDArray[np.uint64], second: npt.NDArray[np.uint64]
) -> tuple[bytes, npt.NDArray[np.int32]]:
    """The keys as Arrow string buffers: (UTF-8 data, offsets), ``KEY_LENGTH`` bytes each."""
    import numpy as np

    count = first.size
    digits = np.empty((count, KEY_LENGTH), dtype=np.uint8)
    digits[:, 0] = ord("k")
    table = np.frombuffer(_HEX, dtype=np.uint8)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    digits[:, 1:17] = table[(first[:, None] >> shifts) & np.uint64(15)]
    digits[:, 17:21] = table[(second[:, None] >> shifts[:4]) & np.uint64(15)]
    offsets = np.arange(0, (count + 1) * KEY_LENGTH, KEY_LENGTH, dtype=np.int32)
    return digits.tobytes(), offsets
