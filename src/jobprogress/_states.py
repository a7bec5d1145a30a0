"""The one source of the status vocabulary, the job-state rule and every length limit.

Pure Python with no imports, so the tracker, the wire models, the store (its SQL is built from these
names), the collector and the CLI all read the same words and numbers without loading anything.

* A **status** is what a worker reports for its run: ``running`` or one of the final ones.
* A **job state** is what the read side shows: the job's status, or ``lost`` / ``stalled`` for a
  running job whose workers went quiet (judged on the store's clock).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: keeps `import jobprogress` from loading typing
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Final

# -- statuses (the wire's `status`) --------------------------------------------------------------

RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
STATUSES: Final = (RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATUSES: Final = frozenset({SUCCEEDED, FAILED, CANCELLED})

# -- job states (the read side's `state`) --------------------------------------------------------

LOST: Final = "lost"
STALLED: Final = "stalled"
ACTIONABLE: Final = (FAILED, LOST, STALLED)
"""States someone should look at, most urgent first."""
READY: Final = (SUCCEEDED, CANCELLED)
"""States of jobs that ended without needing anyone."""
JOB_STATES: Final = (*ACTIONABLE, RUNNING, *READY)
"""Every job state, in the order the Jobs view lists them."""
STATE_GROUPS: Final = {"actionable": ACTIONABLE, "ready": READY}
"""Names a filter (``--status actionable``) may use for several states at once."""

STATUS_FILTERS: Final = (*STATUSES, STALLED, LOST)
"""What a ``status`` filter of the read API accepts: a stored status, or a running job judged so."""

JOB_STATUS_PRECEDENCE: Final = (FAILED, RUNNING, CANCELLED, SUCCEEDED)
"""A job's status from its workers': the first of these that any worker has."""


def job_status(statuses: Iterable[str]) -> str:
    """The status of a job from its workers' statuses (see :data:`JOB_STATUS_PRECEDENCE`)."""
    present = set(statuses)
    for status in JOB_STATUS_PRECEDENCE[:-1]:
        if status in present:
            return status
    return SUCCEEDED


def job_state(status: str, *, stalled: bool, lost: bool) -> str:
    """The state shown for a job or a worker: ``lost`` or ``stalled`` only while it runs."""
    if status != RUNNING:
        return status
    return LOST if lost else STALLED if stalled else RUNNING


def expand_states(words: Iterable[str]) -> tuple[str, ...]:
    """Job states from filter words, groups expanded, in :data:`JOB_STATES` order.

    Raises:
        ValueError: naming the unknown word and every valid one.
    """
    wanted: set[str] = set()
    for word in words:
        if word in STATE_GROUPS:
            wanted.update(STATE_GROUPS[word])
        elif word in JOB_STATES:
            wanted.add(word)
        else:
            valid = ", ".join((*JOB_STATES, *STATE_GROUPS))
            raise ValueError(f"unknown status {word!r}; valid: {valid}")
    return tuple(state for state in JOB_STATES if state in wanted)


# -- limits ---------------------------------------------------------------------------------------

MAX_COUNT: Final = 2**63 - 1
"""Largest count or seq: the top of a signed 64-bit BIGINT."""
MAX_ID_LENGTH: Final = 256
"""Job, worker and run ids, in characters (the store's key columns)."""
MAX_KIND_LENGTH: Final = 64
"""A job's kind, at the tracker, on the wire, in filters and in the column."""
MAX_UNIT_LENGTH: Final = 64
"""A unit name, including units a newer writer sends that this release does not know."""
MAX_STRING_LENGTH: Final = 256
"""A payload string value."""
MAX_KEY_LENGTH: Final = 64
"""A payload key."""
MAX_ERROR_LENGTH: Final = 256
"""The error summary a tracker makes (type and message)."""
MAX_WIRE_ERROR_LENGTH: Final = 1024
"""An error another writer may send: more than the tracker makes, still bounded."""
DEFAULT_PAYLOAD_LIMIT: Final = 1024
"""Default ``payload_limit``, bytes of JSON."""
PAYLOAD_LIMIT_CEILING: Final = 4096
"""Highest ``payload_limit`` allowed."""
MAX_BATCH_BYTES: Final = 65536
"""A request body to the collector (``POST /v1/batch`` included), bytes of JSON after any gzip."""
MAX_BATCH_MESSAGES: Final = 400
"""Messages in one ``POST /v1/batch``: 400 of the smallest valid messages (about 125 bytes each) fit in
:data:`MAX_BATCH_BYTES`, so a batch at the count limit can be sent (1,000 could not: 126 kB)."""
