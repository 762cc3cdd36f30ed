"""Serving: fast start, clean stop, injected clocks, control routes, the subprocess mode."""

from __future__ import annotations

import ast
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

import sixtyfour_frames.emulator as emulator_package
from sixtyfour_frames.emulator import Emulator, EmulatorError, ManualClock, assert_faults_consumed

from ._support import TLS, companies, live, start_run


def _port_is_closed(base_url: str) -> bool:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


def test_start_is_fast_and_stop_leaves_nothing_behind() -> None:
    threads_before = threading.active_count()
    started = time.perf_counter()
    emu = Emulator().start()
    assert time.perf_counter() - started < 0.5
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", emu.base_url)
    with httpx.Client(base_url=emu.base_url, headers=emu.headers, verify=TLS) as http:
        assert http.get("/workflows").status_code == 200
    emu.stop()
    emu.stop()  # a second stop is harmless
    assert threading.active_count() == threads_before
    assert _port_is_closed(emu.base_url)


def test_misuse_is_explained() -> None:
    emu = Emulator()
    with pytest.raises(EmulatorError, match="not started"):
        _ = emu.base_url
    with emu, pytest.raises(EmulatorError, match="already running"):
        emu.start()
    with pytest.raises(ValueError, match="mode"):
        Emulator(mode="cloud")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pace"):
        Emulator(pace=-1)
    with pytest.raises(ValueError, match="subprocess"):
        Emulator(mode="subprocess", clock=time.time)


def test_api_keys_are_generated_or_taken_as_given() -> None:
    generated = Emulator().api_key
    assert generated.startswith("sk-emu-")
    assert generated != Emulator().api_key
    assert Emulator(api_key="sk-mine").api_key == "sk-mine"
    emu = Emulator()
    assert emu.api_key not in repr(emu)


def test_an_injected_clock_drives_timestamps() -> None:
    now = [1_800_000_000.0]
    with (
        Emulator(clock=lambda: now[0], pace=1.0) as emu,
        httpx.Client(base_url=emu.base_url, headers=emu.headers, verify=TLS) as http,
    ):
        job_id = start_run(http, companies(1))
        now[0] += 2
        body = live(http, job_id)
        with pytest.raises(EmulatorError, match="manual"):
            emu.advance(1)  # only a ManualClock can be advanced through the emulator
    assert body["overall_status"] == "completed"
    assert body["completed_at"] == "2027-01-15T08:00:02.000Z"


def test_a_shared_manual_clock_can_be_advanced_by_either_side() -> None:
    clock = ManualClock()
    with Emulator(clock=clock) as emu:
        emu.advance(5)
        clock.advance(5)
        assert clock() == ManualClock()() + 10


def test_the_manual_clock_never_goes_back() -> None:
    with pytest.raises(ValueError, match="backwards"):
        ManualClock().advance(-1)


def test_control_routes_need_no_key_and_are_not_counted(
    emulator: Emulator, anonymous: httpx.Client, http: httpx.Client
) -> None:
    start_run(http, companies(1))
    assert (
        anonymous.post(
            "/_emulator/faults", json={"route": "runs", "kind": "status", "params": {"code": 500}}
        ).status_code
        == 200
    )
    ledger = anonymous.get("/_emulator/ledger").json()
    assert ledger["requests"]["run"] == 1
    assert sum(ledger["requests"].values()) == 1
    assert anonymous.get("/_emulator/faults/pending").json()[0]["kind"] == "status"
    assert (
        anonymous.post("/_emulator/faults", json={"route": "x", "kind": "status"}).status_code
        == 400
    )
    assert anonymous.get("/_emulator/runs/nope/input").status_code == 404
    assert len(emulator.requests()) == 1


def test_the_emulator_never_imports_the_client() -> None:
    package_dir = Path(emulator_package.__file__).parent
    offenders = []
    for path in package_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("sixtyfour_frames") and not name.startswith(
                    "sixtyfour_frames.emulator"
                ):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_the_subprocess_mode_serves_the_same_api_and_controls() -> None:
    with Emulator(mode="subprocess", clock="manual", pace=1.0, seed=3) as emu:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", emu.base_url)
        with httpx.Client(base_url=emu.base_url, headers=emu.headers, verify=TLS) as http:
            emu.add_fault("run", "stall_run")
            emu.add_fault("runs", "status", code=429, retry_after=1)
            job_id = start_run(http, companies(2), key="sub-1")
            assert http.get("/workflows/runs").status_code == 429
            emu.advance(100)
            assert live(http, job_id)["overall_status"] == "running"  # held by stall_run
            emu.release(job_id)
            emu.advance(100)
            assert live(http, job_id)["overall_status"] == "completed"
            assert_faults_consumed(emu)
            assert [c["kind"] for c in emu.faults_consumed()] == ["stall_run", "status"]

            (run,) = emu.runs()
            assert (run.job_id, run.idempotency_key, run.rows_in, run.status) == (
                job_id,
                "sub-1",
                2,
                "completed",
            )
            assert emu.run_input(job_id) == companies(2)
            (recorded,) = emu.requests("run")
            assert recorded.json() == {"webhook_payload": companies(2)}
            assert emu.ledger()["requests"]["live_status"] == 2

            custom = emu.add_workflow("sub_chain", ["company_enrichment", "remove_columns"])
            assert custom == Emulator.workflow_id("sub_chain")
            with pytest.raises(TypeError, match="built-in block names"):
                emu.add_workflow("callables", [lambda rows: rows])
            with pytest.raises(KeyError):
                emu.run_input("unknown")
            with pytest.raises(ValueError, match="unknown fault kind"):
                emu.add_fault("run", "explode")
            emu.reset()
            assert emu.runs() == []
            assert emu.ledger()["runs_created"] == 0
    assert _port_is_closed(emu.base_url)


def test_the_advance_control_needs_the_manual_clock() -> None:
    with Emulator() as emu, httpx.Client(base_url=emu.base_url, verify=TLS) as http:
        response = http.post("/_emulator/advance", json={"seconds": 1})
    assert response.status_code == 400
    assert "manual clock" in response.json()["detail"]


def test_the_module_entry_point_documents_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    from sixtyfour_frames.emulator.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    usage = capsys.readouterr().out
    for option in ("--port", "--api-key", "--pace", "--seed", "--manual-clock", "--no-idempotency"):
        assert option in usage
