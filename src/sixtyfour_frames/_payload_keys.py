"""Content-addressed row keys: an 80-bit hash of each record's canonical JSON text.

Why not ``hashlib``: one ``blake2b`` call per row costs about a microsecond of Python, which is
most of the time budget for a million rows. This hash is built so that numpy can compute it for
all records at once, word by word, with no per-row Python; it is also written in plain Python
(:func:`record_key`), which is its definition and the reference the vectorised code is tested
against. The key therefore never depends on the library that computed it.

Definition (all arithmetic modulo 2**64):

* ``t`` is the record's JSON object text *without* the key field, in UTF-8, ``n`` bytes long,
  zero-padded to a multiple of 8 bytes; ``w[j]`` is its ``j``-th little-endian 8-byte word;
* ``mix`` is MurmurHash3's 64-bit finaliser (a bijection with full avalanche);
* ``m[j] = mix(w[j] ^ (SEED + j * STEP))``, ``A = Σ m[j]``, ``B = Σ m[j] * (2j + 1)``;
* ``h1 = mix(A ^ (n * LEN1))``, ``h2 = mix(B ^ (n * LEN2))``;
* the key is ``"k"`` + ``h1`` in 16 hex digits + the top 16 bits of ``h2`` in 4 hex digits.

A record that differs from another in one word always gets a different ``A`` (``mix`` is a
bijection and the word's position is mixed in); larger differences must satisfy both sums at
once, so two distinct records share a key with probability about 2**-80. The key starts with a
letter so that no CSV reader takes it for a number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    U64 = npt.NDArray[np.uint64]
    I64 = npt.NDArray[np.int64]

KEY_LENGTH: Final = 21  # "k" + 20 hex digits
KEY_PLACEHOLDER: Final = "k" + "0" * (KEY_LENGTH - 1)
_MASK: Final = (1 << 64) - 1
_MIX_1: Final = 0xFF51AFD7ED558CCD
_MIX_2: Final = 0xC4CEB9FE1A85EC53
# Arbitrary odd constants: fractional digits of sqrt(2), the golden ratio, sqrt(3), sqrt(5).
_SEED: Final = 0x6A09E667F3BCC909
_STEP: Final = 0x9E3779B97F4A7C15
_LEN_1: Final = 0xBB67AE8584CAA73B
_LEN_2: Final = 0xA54FF53A5F1D36F1
_BRACE: Final = ord("}")


# ---------------------------------------------------------------------------------------------
# The definition, in plain Python (used without numpy, and by the tests)
# ---------------------------------------------------------------------------------------------


def _mix(value: int) -> int:
    value ^= value >> 33
    value = (value * _MIX_1) & _MASK
    value ^= value >> 33
    value = (value * _MIX_2) & _MASK
    return value ^ (value >> 33)


def record_key(text: str) -> str:
    """The key of one record, given its JSON object text without the key field."""
    data = text.encode("utf-8")
    padded = data + b"\0" * (-len(data) % 8)
    sum_a = sum_b = 0
    for j in range(len(padded) // 8):
        word = int.from_bytes(padded[8 * j : 8 * j + 8], "little")
        mixed = _mix(word ^ ((_SEED + j * _STEP) & _MASK))
        sum_a += mixed
        sum_b += mixed * (2 * j + 1)
    first = _mix((sum_a & _MASK) ^ ((len(data) * _LEN_1) & _MASK))
    second = _mix((sum_b & _MASK) ^ ((len(data) * _LEN_2) & _MASK))
    return f"k{first:016x}{second >> 48:04x}"


# ---------------------------------------------------------------------------------------------
# Vectorised (numpy): every record of a buffer at once
# ---------------------------------------------------------------------------------------------

_BLOCK_WORDS: Final = 1 << 16  # scratch arrays of 512 KiB: they stay in cache and are reused


def hash_records(
    data: npt.NDArray[np.uint8], starts: I64, lengths: I64, scratch: Scratch | None = None
) -> tuple[U64, U64]:
    """(h1, h2) of records stored in ``data`` at byte ``starts``, ``lengths`` bytes long.

    The last byte of each record is read as ``}`` whatever ``data`` holds there, so a record
    may be hashed in place inside its longer sent text, where a ``,"__sixtyfour_row"`` field
    follows. ``data`` must hold at least 8 readable bytes after every record's end.
    """
    import numpy as np

    words_at = np.ndarray(  # the 8 bytes starting at every byte offset (unaligned reads)
        shape=(data.size - 7,), dtype="<u8", buffer=data, strides=(1,)
    )
    counts = (lengths + 7) // 8
    first = (np.empty(lengths.size, np.uint64), np.empty(lengths.size, np.uint64))
    scratch = scratch or Scratch()
    begin = 0
    bounds = np.cumsum(counts)
    while begin < lengths.size:
        done = int(bounds[begin - 1]) if begin else 0
        end = max(int(np.searchsorted(bounds, done + _BLOCK_WORDS, "right")), begin + 1)
        block = slice(begin, end)
        first[0][block], first[1][block] = _hash_block(
            words_at, starts[block], lengths[block], counts[block], scratch
        )
        begin = end
    return first


class Scratch:
    """Reusable work arrays: a fresh large allocation can cost more than the arithmetic."""

    def __init__(self) -> None:
        self.size = 0
        self.arrays: list[Any] = []

    def take(self, size: int) -> list[Any]:
        import numpy as np

        if size > self.size:
            self.size = size
            self.arrays = [
                np.empty(self.size, np.int64),
                np.empty(self.size, np.uint64),
                np.empty(self.size, np.uint64),
                np.empty(self.size, np.uint64),
            ]
        return [array[:size] for array in self.arrays]


def _hash_block(
    words_at: U64, starts: I64, lengths: I64, counts: I64, scratch: Scratch
) -> tuple[U64, U64]:
    import numpy as np

    total = int(counts.sum())
    index, position, mixed, spare = scratch.take(total)
    firsts = np.cumsum(counts) - counts  # where each record's words begin in the block
    # position of each word inside its record: a count that restarts at every record
    position[:] = 1
    position[firsts[1:]] = (1 - counts[:-1]).astype(np.uint64)
    position[0] = 0
    np.cumsum(position, out=position)
    # byte offset of each word: the record's start + 8 × position
    np.left_shift(position, np.uint64(3), out=mixed)
    np.add(mixed.view(np.int64), np.repeat(starts, counts), out=index)
    words = words_at[index]
    _close_records(words, firsts + counts - 1, lengths - 8 * (counts - 1))
    np.multiply(position, np.uint64(_STEP), out=mixed)
    mixed += np.uint64(_SEED)
    mixed ^= words
    _mix_inplace(mixed, spare)
    sum_a = np.add.reduceat(mixed, firsts)
    position <<= np.uint64(1)
    position |= np.uint64(1)
    mixed *= position
    sum_b = np.add.reduceat(mixed, firsts)
    sizes = lengths.astype(np.uint64)
    sum_a ^= sizes * np.uint64(_LEN_1)
    sum_b ^= sizes * np.uint64(_LEN_2)
    return _mix_inplace(sum_a, np.empty_like(sum_a)), _mix_inplace(sum_b, np.empty_like(sum_b))


_KEEP: Final = [(1 << (8 * keep)) - 1 for keep in range(8)]


def _close_records(words: U64, last: I64, tail: I64) -> None:
    """In each record's last word keep ``tail - 1`` bytes, then the ``}``, then zeros."""
    import numpy as np

    keep = (tail - 1).astype(np.intp)
    masks = np.array(_KEEP, dtype=np.uint64)[keep]
    brace = np.uint64(_BRACE) << (keep.astype(np.uint64) * np.uint64(8))
    words[last] = (words[last] & masks) | brace


def _mix_inplace(values: U64, scratch: U64) -> U64:
    import numpy as np

    for multiplier in (_MIX_1, _MIX_2, None):
        np.right_shift(values, np.uint64(33), out=scratch)
        values ^= scratch
        if multiplier is not None:
            values *= np.uint64(multiplier)
    return values


def key_hex(first: U64, second: U64) -> npt.NDArray[np.uint8]:
    """The 20 hex digits of each key (without the leading ``k``), as an (n, 24) byte array.

    Columns 20-23 are padding, so that each row can be read as three 8-byte words.
    """
    import numpy as np

    count = first.size
    digits = np.zeros((count, 24), dtype=np.uint8)
    high = first.astype(">u8").tobytes().hex().encode("ascii")  # most significant digit first
    low = (second >> np.uint64(48)).astype(">u2").tobytes().hex().encode("ascii")
    digits[:, :16] = np.frombuffer(high, dtype=np.uint8).reshape(count, 16)
    digits[:, 16:20] = np.frombuffer(low, dtype=np.uint8).reshape(count, 4)
    return digits


def key_strings(hex_digits: npt.NDArray[np.uint8]) -> Any:
    """An Arrow string array of the keys (``"k"`` + 20 hex digits) from :func:`key_hex`."""
    import numpy as np
    import pyarrow as pa

    count = hex_digits.shape[0]
    text = np.empty((count, KEY_LENGTH), dtype=np.uint8)
    text[:, 0] = ord("k")
    text[:, 1:] = hex_digits[:, :20]
    offsets = np.arange(0, (count + 1) * KEY_LENGTH, KEY_LENGTH, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(text.tobytes())]
    )


def keys_of_texts(texts: list[bytes]) -> list[str]:
    """The keys of encoded record texts (each without its key field), vectorised."""
    import numpy as np

    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    data = np.frombuffer(b"".join(texts) + b"\0" * 8, dtype=np.uint8)
    starts = np.cumsum(lengths) - lengths
    hex_digits = key_hex(*hash_records(data, starts, lengths))
    flat = hex_digits[:, :20].tobytes().decode("ascii")
    return ["k" + flat[i : i + 20] for i in range(0, len(flat), 20)]


# ---------------------------------------------------------------------------------------------
# In one writable copy of the texts: hash each sent text's keyless part, stamp its key
# ---------------------------------------------------------------------------------------------

_VIEW: Final = [("size", "<i4"), ("prefix", "<u4"), ("buffer", "<i4"), ("offset", "<i4")]

Texts = tuple["npt.NDArray[np.uint8]", "I64"]
"""Texts laid end to end: the bytes (with 8 zero bytes after them, for unaligned 8-byte reads)
and the ``n + 1`` offsets where each text starts (the last one: where the bytes end)."""


def texts_of_views(array: Any) -> Texts | None:
    """The texts of a ``string_view`` array (what Polars builds), copied once into one buffer.

    Polars appends each text after the previous one in its data buffers, so each buffer's used
    part is copied whole. None when the array is not laid out that way (the caller then lets
    Arrow convert it).
    """
    import numpy as np
    import pyarrow as pa

    if array.null_count or array.offset or not pa.types.is_string_view(array.type):
        return None
    count = len(array)
    views = np.frombuffer(array.buffers()[1], dtype=_VIEW)[:count]
    sizes = views["size"].astype(np.int64)
    starts = views["offset"].astype(np.int64)
    owner = views["buffer"]
    if count == 0 or (sizes <= 12).any():
        return None  # a text of up to 12 bytes lives inside its view, not in a buffer
    follows = owner[1:] == owner[:-1]
    expected = np.where(follows, starts[:-1] + sizes[:-1], 0)
    if starts[0] != 0 or (starts[1:] != expected).any() or (np.diff(owner) < 0).any():
        return None
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = np.empty(int(offsets[-1]) + 8, dtype=np.uint8)
    data[-8:] = 0
    firsts = np.flatnonzero(np.concatenate(([True], ~follows)))
    for first, stop in zip(firsts.tolist(), [*firsts[1:].tolist(), count], strict=True):
        begin, end = int(offsets[first]), int(offsets[stop])
        source = array.buffers()[2 + int(owner[first])]
        data[begin:end] = np.frombuffer(source, dtype=np.uint8, count=end - begin)
    return data, offsets


def texts_of_large_strings(array: Any) -> Texts | None:
    """The texts of a ``large_string`` array, copied into one buffer (None if it has nulls)."""
    import numpy as np
    import pyarrow as pa

    from sixtyfour_frames._arrow_bytes import string_bytes

    if array.null_count or not pa.types.is_large_string(array.type):
        return None
    offsets, text = string_bytes(array)
    data = np.empty(text.size + 8, dtype=np.uint8)
    data[: text.size] = text
    data[text.size :] = 0
    return data, offsets


def hash_and_stamp(texts: Texts, tail: int) -> tuple[Any, npt.NDArray[np.uint8], U64] | None:
    """Key records whose texts end with the key placeholder, writing each key into its text.

    Each text is the sent object with ``KEY_PLACEHOLDER`` in place of its key, followed by
    ``"}`` (``tail`` bytes from the ``,`` that opens the key field to the end). Returns the
    texts as a ``large_string`` array over the same bytes, now holding their keys, the keys'
    hex digits (see :func:`key_hex`) and their first lane (to find duplicates cheaply); None
    when a text is too short to hold the key field, so that the caller can take the slow path.
    """
    import pyarrow as pa

    data, offsets = texts
    starts, sizes = offsets[:-1], offsets[1:] - offsets[:-1]
    if (sizes <= tail).any():
        return None
    first, second = hash_records(data, starts, sizes - tail + 1)
    hex_digits = key_hex(first, second)
    _stamp(data, starts + sizes - 2 - (KEY_LENGTH - 1), hex_digits)  # the digits after the "k"
    stamped = pa.Array.from_buffers(
        pa.large_string(),
        len(starts),
        [None, pa.py_buffer(offsets), pa.py_buffer(data[:-8])],
    )
    return stamped, hex_digits, first


def _stamp(data: npt.NDArray[np.uint8], where: I64, hex_digits: npt.NDArray[np.uint8]) -> None:
    """Write 20 hex digits at each byte offset in ``where``: two 8-byte and one 4-byte store."""
    import numpy as np

    words = hex_digits.view("<u8")  # (n, 3): digits 0-7, 8-15, 16-19 + padding
    at_8 = np.ndarray(shape=(data.size - 7,), dtype="<u8", buffer=data, strides=(1,))
    at_4 = np.ndarray(shape=(data.size - 3,), dtype="<u4", buffer=data, strides=(1,))
    at_8[where] = words[:, 0]
    at_8[where + 8] = words[:, 1]
    at_4[where + 16] = hex_digits[:, 16:20].copy().view("<u4")[:, 0]
