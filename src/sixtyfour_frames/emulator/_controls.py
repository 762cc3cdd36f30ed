"""The emulator's test controls, local (same process) or remote (over ``/_emulator`` HTTP).

Both implementations return the same Python objects, so an ``Emulator`` behaves the same whether
it runs in a thread or in a child process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from sixtyfour_frames.emulator._clock import ManualClock
from sixtyfour_frames.emulator._errors import EmulatorError, NotFound
from sixtyfour_frames.emulator._records import RecordedRequest, RunRecord
from sixtyfour_frames.emulator._state import EmulatorState
from sixtyfour_frames.emulator._workflows import BlockSpec

Record = dict[str, Any]


class Controls(Protocol):
    """What ``Emulator``'s control methods delegate to."""

    def add_fault(self, route: str, kind: str, times: int, params: dict[str, Any]) -> int: ...
    def faults_pending(self) -> list[dict[str, Any]]: ...
    def faults_consumed(self) -> list[dict[str, Any]]: ...
    def ledger(self) -> dict[str, Any]: ...
    def requests(self, route: str | None) -> list[RecordedRequest]: ...
    def runs(self) -> list[RunRecord]: ...
    def run_input(self, job_id: str) -> list[Record]: ...
    def release(self, job_id: str) -> None: ...
    def reset(self) -> None: ...
    def advance(self, seconds: float) -> float: ...
    def add_workflow(
        self,
        name: str,
        blocks: Sequence[BlockSpec],
        workflow_id: str | None,
        required_columns: Sequence[str],
        dataframe_type: str,
        description: str | None,
    ) -> str: ...
    def close(self) -> None: ...


class LocalControls:
    """Controls acting directly on a state core in this process."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def add_fault(self, route: str, kind: str, times: int, params: dict[str, Any]) -> int:
        return self.state.faults.add(route, kind, times, **params)

    def faults_pending(self) -> list[dict[str, Any]]:
        return self.state.faults.pending()

    def faults_consumed(self) -> list[dict[str, Any]]:
        return self.state.faults.consumed()

    def ledger(self) -> dict[str, Any]:
        return self.state.ledger()

    def requests(self, route: str | None) -> list[RecordedRequest]:
        return self.state.requests(route)

    def runs(self) -> list[RunRecord]:
        return self.state.runs()

    def run_input(self, job_id: str) -> list[Record]:
        try:
            return self.state.run_input(job_id)
        except NotFound:
            raise KeyError(job_id) from None

    def release(self, job_id: str) -> None:
        try:
            self.state.release(job_id)
        except NotFound:
            raise KeyError(job_id) from None

    def reset(self) -> None:
        self.state.reset()

    def advance(self, seconds: float) -> float:
        clock = self.state.clock
        if not isinstance(clock, ManualClock):
            raise EmulatorError('advance() needs Emulator(clock="manual")')
        return clock.advance(seconds)

    def add_workflow(
        self,
        name: str,
        blocks: Sequence[BlockSpec],
        workflow_id: str | None,
        required_columns: Sequence[str],
        dataframe_type: str,
        description: str | None,
    ) -> str:
        return self.state.add_workflow(
            name,
            blocks,
            workflow_id=workflow_id,
            required_columns=required_columns,
            dataframe_type=dataframe_type,
            description=description,
        )

    def close(self) -> None:
        pass


class RemoteControls:
    """Controls sent to ``/_emulator/...`` routes of an emulator in another process."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.Client(base_url=f"{base_url}/_emulator", timeout=10.0)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code == 404:
            raise KeyError(response.json().get("detail", path))
        if response.status_code == 400:
            raise ValueError(response.json().get("detail", "bad control request"))
        response.raise_for_status()
        return response.json()

    def add_fault(self, route: str, kind: str, times: int, params: dict[str, Any]) -> int:
        body = {"route": route, "kind": kind, "times": times, "params": params}
        return int(self._call("POST", "/faults", json=body)["id"])

    def faults_pending(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/faults/pending")
        return result

    def faults_consumed(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/faults/consumed")
        return result

    def ledger(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/ledger")
        return result

    def requests(self, route: str | None) -> list[RecordedRequest]:
        params = {} if route is None else {"route": route}
        return [RecordedRequest.from_json(r) for r in self._call("GET", "/requests", params=params)]

    def runs(self) -> list[RunRecord]:
        return [RunRecord.from_json(r) for r in self._call("GET", "/runs")]

    def run_input(self, job_id: str) -> list[Record]:
        result: list[Record] = self._call("GET", f"/runs/{job_id}/input")
        return result

    def release(self, job_id: str) -> None:
        self._call("POST", f"/runs/{job_id}/release")

    def reset(self) -> None:
        self._call("POST", "/reset")

    def advance(self, seconds: float) -> float:
        try:
            return float(self._call("POST", "/advance", json={"seconds": seconds})["now"])
        except ValueError as exc:
            raise EmulatorError(str(exc)) from None

    def add_workflow(
        self,
        name: str,
        blocks: Sequence[BlockSpec],
        workflow_id: str | None,
        required_columns: Sequence[str],
        dataframe_type: str,
        description: str | None,
    ) -> str:
        if not all(isinstance(block, str) for block in blocks):
            raise TypeError(
                "a subprocess emulator only takes built-in block names; use mode='thread' for "
                "Python callables"
            )
        body = {
            "name": name,
            "blocks": list(blocks),
            "workflow_id": workflow_id,
            "required_columns": list(required_columns),
            "dataframe_type": dataframe_type,
            "description": description,
        }
        return str(self._call("POST", "/workflows", json=body)["workflow_id"])

    def close(self) -> None:
        self._http.close()
