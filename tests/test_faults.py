"""reliability.md §7 as tests: every scenario from A1 to I45, named after its number.

The scenarios live in :mod:`tests.fault_matrix` (``scripts/soak.py`` runs the same functions with
random seeds); each test here runs one of them once, with seed 0 and its documented fault counts,
over real loopback sockets against the emulator's fault plans or :mod:`tests.fault_proxy`. Every
scenario ends by checking that its fault plan was fully consumed and by reading its outcome from
the emulator's charge ledger (and, where the orchestrator runs, from the client's ledger), and
:func:`check` then holds its figures to the targets: no duplicate run, no row charged twice, no
paid result lost, no key leak, no leaked connection, attempts within the retry limit.

Scenarios already covered elsewhere:

* A3 with the emulator holding the answer (a 409 until it lets go):
  ``tests/test_client.py::test_a_stall_past_the_read_timeout_is_retried_with_the_same_key``.
* F33-F35 (crash points in a killed subprocess, two processes at once, a corrupt journal):
  ``tests/test_credit_safety.py``.
* G36-G40 (key hygiene, redirects, signed URLs, TLS, a missing key): ``tests/test_security.py``.
* H41-H42 serializer details and hypothesis fuzzing: ``tests/test_payload*.py``; here, every row
  of the §6 table goes through ``enrich`` and must either reach the wire exactly or fail before
  any POST.
* I44 contract tests of the emulator itself: ``tests/emulator/test_contract.py``.
* I46 (opt-in tests against the real API) is not part of the suite.

Scenarios that fail on a bug outside the client's files are marked ``xfail(strict=True)`` with
the bug in the reason, so the mark has to go when the bug is fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sixtyfour_frames.emulator import Emulator
from tests import fault_matrix as fm
from tests.fault_matrix import Env, Outcome

MakeEnv = Callable[[str], Env]


@pytest.fixture(scope="session")
def keyless_emulator(shared_emulator: Emulator) -> Iterator[Emulator]:
    """An emulator that ignores Idempotency-Keys, with the same API key as the shared one."""
    with Emulator(seed=0, idempotency=False, api_key=shared_emulator.api_key) as emu:
        yield emu


@pytest.fixture
def make_env(
    emu: Emulator, keyless_emulator: Emulator, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[MakeEnv]:
    made: list[Env] = []

    def make(kind: str) -> Env:
        env = Env(
            emu,
            kind,
            tmp_path / f"{kind}-{len(made)}",
            keyless=lambda: keyless_emulator,
            scenario=request.node.name,
        )
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


def check(scenario: Callable[[Env], Outcome], env: Env) -> Outcome:
    outcome = fm.play(scenario, env)
    fm.assert_figures(outcome)
    return outcome


def known_bug(name: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=fm.MATRIX[name].known_bug)


def test_every_scenario_of_the_matrix_has_a_test_here() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    # The soak plays the serializer table as one scenario; here each row is a test of its own.
    played_by_rows = {"h41_the_serializer_table"}
    untested = [n for n in fm.MATRIX if f"fm.{n}," not in source and n not in played_by_rows]
    assert untested == []
    numbers = {entry.code for entry in fm.MATRIX.values()}
    wanted = {f"A{n:02d}" for n in range(1, 16)} | {f"B{n}" for n in range(16, 22)}
    wanted |= {f"C{n}" for n in range(22, 26)} | {"D26", "D27"}
    wanted |= {f"E{n}" for n in range(28, 33)} | {"H41", "H42", "H43", "I44"}
    assert wanted <= numbers, sorted(wanted - numbers)


# ================================================================ A. submitting a run


def test_A01_503_twice_then_200(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a01_503_twice_then_200, make_env(api_kind))


def test_A02_commit_then_reset(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a02_commit_then_reset, make_env(api_kind))


def test_A03_commit_then_stall_past_the_read_timeout(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a03_commit_then_stall_past_the_read_timeout, make_env(api_kind))


def test_A04_truncated_or_malformed_200(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a04_truncated_or_malformed_200, make_env(api_kind))


def test_A04_unreadable_answers_until_the_retries_run_out(make_env: MakeEnv) -> None:
    check(fm.a04_unreadable_answers_until_the_retries_run_out, make_env("sync"))


def test_A05_reset_before_read(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a05_reset_before_read, make_env(api_kind))


def test_A06_connection_refused_then_up(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a06_connection_refused_then_up, make_env(api_kind))


def test_A06_intent_is_journaled_before_the_first_attempt(make_env: MakeEnv) -> None:
    check(fm.a06_intent_is_journaled_before_the_first_attempt, make_env("sync"))


def test_A07_keys_disabled_ambiguous_then_adopted_on_resume(make_env: MakeEnv) -> None:
    check(fm.a07_keys_disabled_ambiguous_then_adopted_on_resume, make_env("sync"))


def test_A07_two_unexplained_runs_raise_with_candidates(make_env: MakeEnv) -> None:
    check(fm.a07_two_unexplained_runs_raise_with_candidates, make_env("sync"))


def test_A08_409_in_flight_then_replay(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a08_409_in_flight_then_replay, make_env(api_kind))


def test_A08_two_concurrent_sends_with_one_key(make_env: MakeEnv) -> None:
    check(fm.a08_two_concurrent_sends_with_one_key, make_env("sync"))


def test_A09_same_key_different_body(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a09_same_key_different_body, make_env(api_kind))


def test_A10_final_statuses_are_not_retried(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a10_final_statuses_are_not_retried, make_env(api_kind))


def test_A10_final_statuses_journal_failed_no_run(make_env: MakeEnv) -> None:
    check(fm.a10_final_statuses_journal_failed_no_run, make_env("sync"))


def test_A10_a_4xx_after_an_ambiguous_attempt_may_hide_a_run(
    make_env: MakeEnv, api_kind: str
) -> None:
    check(fm.a10_a_4xx_after_an_ambiguous_attempt_may_hide_a_run, make_env(api_kind))


def test_A10_a_4xx_after_an_ambiguous_attempt_is_resolved_not_failed(make_env: MakeEnv) -> None:
    check(fm.a10_a_4xx_after_an_ambiguous_attempt_is_resolved_not_failed, make_env("sync"))


def test_A11_429_backoff_retry_after_and_its_cap(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a11_429_backoff_retry_after_and_its_cap, make_env(api_kind))


def test_A11_a_retry_after_above_the_cap_keeps_the_intent(make_env: MakeEnv) -> None:
    check(fm.a11_a_retry_after_above_the_cap_keeps_the_intent, make_env("sync"))


def test_A12_malformed_retry_after(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a12_malformed_retry_after, make_env(api_kind))


def test_A13_retry_budget_bounds_a_storm(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a13_retry_budget_bounds_a_storm, make_env(api_kind))


def test_A13_a_storm_through_the_journal_ends_ambiguous_then_resolves(make_env: MakeEnv) -> None:
    check(fm.a13_a_storm_through_the_journal_ends_ambiguous_then_resolves, make_env("sync"))


def test_A13_a_persistent_outage_is_not_resubmitted_forever(make_env: MakeEnv) -> None:
    check(fm.a13_a_persistent_outage_is_not_resubmitted_forever, make_env("sync"))


def test_A14_ctrl_c_during_the_post_keeps_the_intent(make_env: MakeEnv) -> None:
    check(fm.a14_ctrl_c_during_the_post_keeps_the_intent, make_env("sync"))


def test_A14_ctrl_c_during_the_post_cancels_the_run_it_started(make_env: MakeEnv) -> None:
    check(fm.a14_ctrl_c_during_the_post_cancels_the_run_it_started, make_env("sync"))


def test_A14_task_cancelled_during_commit_then_stall(make_env: MakeEnv) -> None:
    check(fm.a14_task_cancelled_during_commit_then_stall, make_env("async"))


def test_A15_keep_alive_race(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.a15_keep_alive_race, make_env(api_kind))


# ================================================================ B. polling


def test_B16_a_burst_of_poll_failures(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.b16_a_burst_of_poll_failures, make_env(api_kind))


def test_B16_a_burst_of_poll_failures_during_enrich(make_env: MakeEnv) -> None:
    check(fm.b16_a_burst_of_poll_failures_during_enrich, make_env("sync"))


def test_B17_404_right_after_create(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.b17_404_right_after_create, make_env(api_kind))


def test_B17_404_right_after_create_during_enrich(make_env: MakeEnv) -> None:
    check(fm.b17_404_right_after_create_during_enrich, make_env("sync"))


def test_B18_unknown_and_misspelt_statuses(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.b18_unknown_and_misspelt_statuses, make_env(api_kind))


def test_B19_status_regresses_and_fields_change(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.b19_status_regresses_and_fields_change, make_env(api_kind))


def test_B19_progress_never_goes_backwards(make_env: MakeEnv) -> None:
    check(fm.b19_progress_never_goes_backwards, make_env("sync"))


def test_B20_the_wait_deadline_does_not_cancel(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.b20_the_wait_deadline_does_not_cancel, make_env(api_kind))


def test_B20_a_timed_out_enrich_keeps_its_run_and_resumes(make_env: MakeEnv) -> None:
    check(fm.b20_a_timed_out_enrich_keeps_its_run_and_resumes, make_env("sync"))


def test_B21_poll_cadence_and_the_request_rate(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.b21_poll_cadence_and_the_request_rate, make_env(api_kind))


def test_B21_many_concurrent_runs_stay_under_the_rate_limit(make_env: MakeEnv) -> None:
    check(fm.b21_many_concurrent_runs_stay_under_the_rate_limit, make_env("sync"))


# ================================================================ C. cancel


def test_C22_cancel_an_active_run(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.c22_cancel_an_active_run, make_env(api_kind))


def test_C22_cancel_an_enrich_call(make_env: MakeEnv) -> None:
    check(fm.c22_cancel_an_enrich_call, make_env("sync"))


def test_C23_cancel_after_completion(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.c23_cancel_after_completion, make_env(api_kind))


def test_C23_cancel_after_completion_during_enrich(make_env: MakeEnv) -> None:
    check(fm.c23_cancel_after_completion_during_enrich, make_env("sync"))


def test_C24_cancel_with_a_lost_answer(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.c24_cancel_with_a_lost_answer, make_env(api_kind))


def test_C25_ctrl_c_while_polling(make_env: MakeEnv) -> None:
    check(fm.c25_ctrl_c_while_polling, make_env("sync"))


def test_C25_sigterm_while_polling_is_not_intercepted(make_env: MakeEnv) -> None:
    check(fm.c25_sigterm_while_polling_is_not_intercepted, make_env("sync"))


# ================================================================ D. list and reconcile


def test_D26_a_list_with_a_failure_and_a_duplicate(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.d26_a_list_with_a_failure_and_a_duplicate, make_env(api_kind))


def test_D26_reconciliation_is_unchanged_by_list_faults(make_env: MakeEnv) -> None:
    check(fm.d26_reconciliation_is_unchanged_by_list_faults, make_env("sync"))


def test_D27_another_clients_run_is_never_adopted(make_env: MakeEnv) -> None:
    check(fm.d27_another_clients_run_is_never_adopted, make_env("sync"))


def test_D27_an_unverifiable_run_is_not_adopted(make_env: MakeEnv) -> None:
    check(fm.d27_an_unverifiable_run_is_not_adopted, make_env("sync"))


# ================================================================ E. results download


def test_E28_truncated_downloads(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.e28_truncated_downloads, make_env(api_kind))


def test_E28_truncated_downloads_during_enrich(make_env: MakeEnv) -> None:
    check(fm.e28_truncated_downloads_during_enrich, make_env("sync"))


def test_E29_expired_or_missing_urls(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.e29_expired_or_missing_urls, make_env(api_kind))


def test_E30_files_inline_results_and_formats(make_env: MakeEnv, api_kind: str) -> None:
    check(fm.e30_files_inline_results_and_formats, make_env(api_kind))


def test_E31_results_reordered_missing_and_extra(make_env: MakeEnv) -> None:
    check(fm.e31_results_reordered_missing_and_extra, make_env("sync"))


def test_E32_per_row_failures_are_kept(make_env: MakeEnv) -> None:
    check(fm.e32_per_row_failures_are_kept, make_env("sync"))


# F33-F35: tests/test_credit_safety.py (crash points in a killed subprocess).
# G36-G40: tests/test_security.py.


# ================================================================ H. bad input


@pytest.mark.parametrize("case", fm.SERIALIZER_CASES, ids=lambda case: case.name)
def test_H41_no_post_after_a_local_validation_failure(make_env: MakeEnv, case: fm.Case) -> None:
    env = make_env("sync")
    try:
        fm.h41_serializer_case(env, case)
    finally:
        outcome = env.close()
    assert outcome.posts_after_validation_failure == 0
    assert outcome.runs_created == (0 if case.rejected else 1)
    fm.assert_figures(outcome)


def test_H42_round_trip_with_duplicate_key_detection(make_env: MakeEnv) -> None:
    check(fm.h42_round_trip_with_duplicate_key_detection, make_env("sync"))


def test_H43_a_large_frame_in_chunks_resumes_only_what_is_missing(make_env: MakeEnv) -> None:
    check(fm.h43_a_large_frame_in_chunks_resumes_only_what_is_missing, make_env("sync"))


# ================================================================ I. the oracle


def test_I44_every_answer_the_client_reads_matches_the_contract(
    make_env: MakeEnv, api_kind: str
) -> None:
    check(fm.i44_every_answer_the_client_reads_matches_the_contract, make_env(api_kind))


@pytest.fixture(scope="module")
def subprocess_emulator(shared_emulator: Emulator) -> Iterator[Emulator]:
    with Emulator(seed=0, mode="subprocess", api_key=shared_emulator.api_key) as emu:
        yield emu


@pytest.mark.parametrize("name", fm.DOUBLE_RUN)
def test_I45_the_same_scenarios_against_a_subprocess_emulator(
    subprocess_emulator: Emulator, tmp_path: Path, api_kind: str, name: str
) -> None:
    subprocess_emulator.reset()
    env = Env(subprocess_emulator, api_kind, tmp_path, scenario=f"{name}[subprocess]")
    try:
        check(fm.MATRIX[name].run, env)
    finally:
        subprocess_emulator.reset()
