"""Fault plans: scripted misbehaviour per route, consumed in order and accounted.

``add`` queues a fault for a route; each request to that route looks at the head of its queue and
consumes it when the fault applies to that request (a ``status`` fault applies to any request, a
``bom`` only to a successful file download, a ``fail_run`` only to a request that creates a run…).
Every consumption is recorded, so a test can prove that each planned fault really happened.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

ROUTES = ("run", "runs", "live_status", "cancel", "download_links", "file")

# Faults that act on the connection or the whole response, whatever the request does.
CONNECTION_KINDS = frozenset(
    {"status", "latency", "reset_before", "reset_after", "stall", "malformed_json"}
)
_JSON_ROUTES = ("run", "runs", "live_status", "cancel", "download_links")
ALLOWED_ROUTES: dict[str, tuple[str, ...]] = {
    "status": ROUTES,
    "latency": ROUTES,
    "reset_before": ROUTES,
    "reset_after": ROUTES,
    "stall": ROUTES,
    "malformed_json": _JSON_ROUTES,
    "truncate": ("file",),
    "bom": ("file",),
    "expire_url": ("download_links",),
    "null_url": ("download_links",),
    "fail_run": ("run",),
    "stall_run": ("run",),
    "canceled_spelling": ("live_status", "runs"),
}
KINDS = tuple(ALLOWED_ROUTES)

_NO_PARAMS: frozenset[str] = frozenset()
_PARAMS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required params, optional params)
    "status": (frozenset({"code"}), frozenset({"retry_after", "retry_after_ms", "body"})),
    "latency": (frozenset({"seconds"}), _NO_PARAMS),
    "stall": (frozenset({"seconds"}), _NO_PARAMS),
    "truncate": (frozenset({"bytes"}), _NO_PARAMS),
    "fail_run": (_NO_PARAMS, frozenset({"at_block", "error_message"})),
    "stall_run": (_NO_PARAMS, frozenset({"at_block"})),
}


@dataclass(frozen=True)
class Fault:
    """One consumption of a planned fault: what to do to this request."""

    id: int
    route: str
    kind: str
    params: Mapping[str, Any]

    def number(self, name: str, default: float = 0.0) -> float:
        """A numeric parameter (seconds, bytes…)."""
        value = self.params.get(name, default)
        return float(value)


@dataclass
class _Planned:
    id: int
    route: str
    kind: str
    params: dict[str, Any]
    times: int
    remaining: int

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "route": self.route,
            "kind": self.kind,
            "params": dict(self.params),
            "times": self.times,
            "remaining": self.remaining,
        }


def validate(route: str, kind: str, times: int, params: Mapping[str, Any]) -> None:
    """Reject a fault that could never be consumed as planned (a typo, a wrong route…)."""
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; routes: {', '.join(ROUTES)}")
    if kind not in ALLOWED_ROUTES:
        raise ValueError(f"unknown fault kind {kind!r}; kinds: {', '.join(KINDS)}")
    if route not in ALLOWED_ROUTES[kind]:
        allowed = ", ".join(ALLOWED_ROUTES[kind])
        raise ValueError(f"fault {kind!r} does not apply to route {route!r} (only {allowed})")
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"times must be a positive integer, not {times!r}")
    required, optional = _PARAMS.get(kind, (_NO_PARAMS, _NO_PARAMS))
    missing = required - params.keys()
    unknown = params.keys() - required - optional
    if missing:
        raise ValueError(f"fault {kind!r} needs {', '.join(sorted(missing))}")
    if unknown:
        raise ValueError(f"fault {kind!r} does not take {', '.join(sorted(unknown))}")
    _validate_values(kind, params)


def _validate_values(kind: str, params: Mapping[str, Any]) -> None:
    if kind == "status":
        code = params["code"]
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError(f"status code must be an integer in 100..599, not {code!r}")
    for name in ("seconds", "bytes"):
        if name in params and (not isinstance(params[name], int | float) or params[name] < 0):
            raise ValueError(f"{name} must be a non-negative number, not {params[name]!r}")
    if "at_block" in params:
        at_block = params["at_block"]
        if isinstance(at_block, bool) or not isinstance(at_block, int) or at_block < 1:
            raise ValueError(f"at_block must be a block sequence number ≥ 1, not {at_block!r}")


class FaultPlan:
    """The queues of planned faults, one per route, and the record of what was consumed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[_Planned]] = {route: [] for route in ROUTES}
        self._consumed: list[dict[str, Any]] = []
        self._next_id = 1

    def add(self, route: str, kind: str, times: int = 1, **params: Any) -> int:
        """Queue ``times`` consumptions of a fault on ``route``; returns the fault's id."""
        validate(route, kind, times, params)
        with self._lock:
            planned = _Planned(self._next_id, route, kind, dict(params), times, times)
            self._next_id += 1
            self._queues[route].append(planned)
            return planned.id

    def take(
        self, route: str, kinds: Collection[str], *, now: float, note: str = ""
    ) -> Fault | None:
        """Consume the head of ``route``'s queue if its kind is one of ``kinds``."""
        with self._lock:
            queue = self._queues.get(route)  # routes without fault plans have no queue
            if not queue or queue[0].kind not in kinds:
                return None
            head = queue[0]
            head.remaining -= 1
            if head.remaining == 0:
                queue.pop(0)
            self._consumed.append({**head.describe(), "time": now, "note": note})
            return Fault(head.id, head.route, head.kind, dict(head.params))

    def note_last(self, fault: Fault, note: str) -> None:
        """Attach what a consumption did (e.g. the job id it affected) to its record."""
        with self._lock:
            for record in reversed(self._consumed):
                if record["id"] == fault.id:
                    record["note"] = note
                    return

    def pending(self) -> list[dict[str, Any]]:
        """Planned faults not yet fully consumed, route by route, in queue order."""
        with self._lock:
            return [planned.describe() for route in ROUTES for planned in self._queues[route]]

    def consumed(self) -> list[dict[str, Any]]:
        """Every consumption so far, in the order it happened."""
        with self._lock:
            return [dict(record) for record in self._consumed]

    def clear(self) -> None:
        """Forget every plan and every consumption."""
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
            self._consumed.clear()
