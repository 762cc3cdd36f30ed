"""Assertions for tests that use the emulator."""

from __future__ import annotations

from typing import Protocol


class _HasFaults(Protocol):
    def faults_pending(self) -> list[dict[str, object]]: ...


def assert_faults_consumed(emulator: _HasFaults) -> None:
    """Fail (``AssertionError``) if any planned fault was never consumed.

    A fault test whose fault never fired proves nothing; call this at the end of each one.
    """
    pending = emulator.faults_pending()
    if pending:
        lines = [
            f"  {f['route']}: {f['kind']} {f['params']} ({f['remaining']} of {f['times']} left)"
            for f in pending
        ]
        raise AssertionError("planned faults were never consumed:\n" + "\n".join(lines))
