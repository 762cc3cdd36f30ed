"""Submitting one chunk so that it is paid for exactly once (the ledger's submit algorithm).

The intent and its Idempotency-Key are in the ledger before the POST; the job id right after.
An answer that leaves it open whether a run was created makes the submission AMBIGUOUS, which is
resolved through the list of runs (adopt the one unexplained run, raise on several) and never by
sending the records again under a fresh key while a run might exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sixtyfour_frames._client import Client
from sixtyfour_frames._crash import crash_point
from sixtyfour_frames._errors import (
    AmbiguousSubmitError,
    APIError,
    ConflictError,
    RateLimitError,
    ServerError,
    SixtyfourError,
    TransportError,
)
from sixtyfour_frames._ledger import Ledger, Submission, SubmissionState
from sixtyfour_frames._models import RunSummary
from sixtyfour_frames._operations import EncodedPayload

logger = logging.getLogger("sixtyfour_frames")

# Runs queued this long before our intent (clock skew between us and the server) still count.
RECONCILE_SKEW_SECONDS = 300.0
# A run may take a moment to appear in the list after it was created.
SETTLE_DELAY_SECONDS = 2.0


class Submitter:
    """Turns an INTENT or AMBIGUOUS submission into a SUBMITTED one, or raises."""

    def __init__(
        self,
        client: Client,
        ledger: Ledger,
        *,
        sleep: Callable[[float], None],
        specs_override: Mapping[str, Any] | None,
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._sleep = sleep
        self._specs = specs_override
        # Job ids taken over from the runs list in this process: their rows must prove them ours.
        self.adopted: set[str] = set()

    def submit(self, submission: Submission, records_json: bytes) -> Submission:
        if submission.state is SubmissionState.AMBIGUOUS:
            resolved = self._reconcile(submission, settle=False)
            if resolved is not None:
                return resolved
        return self._post(submission, records_json)

    def find_run(self, submission: Submission) -> Submission | None:
        """Without sending anything: adopt the run an interrupted POST may have started."""
        return self._reconcile(submission, settle=False)

    def _post(self, submission: Submission, records_json: bytes) -> Submission:
        fingerprint = submission.fingerprint
        try:
            started = self._client.run_workflow(
                submission.workflow_id,
                webhook_payload=EncodedPayload(records_json),
                specs_override=self._specs,
                idempotency_key=submission.idempotency_key,
            )
        except TransportError as error:
            if not error.sent:
                raise  # nothing reached the server: the INTENT stays, same key next time
            return self._ambiguous(submission, error)
        except APIError as error:
            if _may_have_created_a_run(error):
                return self._ambiguous(submission, error)
            if isinstance(error, RateLimitError):
                raise  # not processed; the INTENT and its key stay for the next attempt
            self._ledger.mark(fingerprint, SubmissionState.FAILED_NO_RUN, error=str(error))
            raise
        crash_point("after_response")
        return self._ledger.mark_submitted(
            fingerprint, job_id=started.job_id, already_started=started.already_started
        )

    def _ambiguous(self, submission: Submission, error: SixtyfourError) -> Submission:
        logger.warning(
            "the outcome of starting a run is unknown (%s); checking the list of runs", error
        )
        self._ledger.mark(submission.fingerprint, SubmissionState.AMBIGUOUS, error=str(error))
        try:
            resolved = self._reconcile(submission, settle=True)
        except AmbiguousSubmitError as several:
            # Several candidate runs: that error already names them. Catching it below as a
            # list failure would drop the candidates and claim the list could not be read.
            raise several from error
        except SixtyfourError as list_error:
            raise AmbiguousSubmitError(
                f"a run of workflow {submission.workflow_id} may have been started, and the list "
                f"of runs cannot be read to check it ({list_error})",
                idempotency_key=submission.idempotency_key,
                workflow_id=submission.workflow_id,
            ) from error
        if resolved is not None:
            return resolved
        # No run exists: record that, and start over under a new key (the ledger links the two).
        self._ledger.mark(
            submission.fingerprint,
            SubmissionState.FAILED_NO_RUN,
            error="no run was created by the ambiguous attempt",
        )
        raise _NoRunWasCreated(submission.fingerprint, error)

    def _reconcile(self, submission: Submission, *, settle: bool) -> Submission | None:
        """Adopt the one run that only this submission can explain; None if there is none."""
        candidates = self._unexplained_runs(submission)
        if not candidates and settle:
            self._sleep(SETTLE_DELAY_SECONDS)
            candidates = self._unexplained_runs(submission)
        if len(candidates) > 1:
            raise AmbiguousSubmitError(
                f"{len(candidates)} runs of workflow {submission.workflow_id} started since this "
                "submission and none is known to the ledger; the library will not guess which is "
                "ours.",
                idempotency_key=submission.idempotency_key,
                workflow_id=submission.workflow_id,
                candidates=[run.job_id for run in candidates],
            )
        if not candidates:
            return None
        job_id = candidates[0].job_id
        # Another client's run can be the one candidate: the orchestrator checks the run's row
        # keys against this submission's records once it has downloaded them.
        logger.warning("adopting run %s for an ambiguous submission", job_id)
        self.adopted.add(job_id)
        return self._ledger.mark_submitted(
            submission.fingerprint, job_id=job_id, already_started=True
        )

    def _unexplained_runs(self, submission: Submission) -> list[RunSummary]:
        since = submission.created_at - RECONCILE_SKEW_SECONDS
        runs = self._client.list_runs(workflow_id=submission.workflow_id, limit=500)
        return [
            run
            for run in runs
            if _queued_epoch(run) >= since and self._ledger.by_job_id(run.job_id) is None
        ]


class _NoRunWasCreated(Exception):
    """Internal: an ambiguous submission proved to have created nothing; it may be sent afresh.

    ``error`` is what made the attempt ambiguous, for the caller to raise when it stops trying.
    """

    def __init__(self, fingerprint: str, error: SixtyfourError) -> None:
        self.fingerprint = fingerprint
        self.error = error
        super().__init__(fingerprint)


NoRunWasCreated = _NoRunWasCreated


def _may_have_created_a_run(error: APIError) -> bool:
    return error.maybe_acted_before or isinstance(error, ServerError | ConflictError)


def _queued_epoch(run: RunSummary) -> float:
    stamp = run.queued_at or run.created_at
    if not stamp:
        return float("inf")  # no time given: it cannot be ruled out
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")
