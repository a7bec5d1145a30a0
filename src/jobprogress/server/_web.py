"""The Jobs view in a browser: ``GET /jobs`` and ``GET /jobs/{job_id}``, server-rendered with Jinja2.

Read-only: GET routes over a :class:`JobReader`; nothing on the page can change state. Every value a
worker wrote goes through autoescape, and through :func:`~jobprogress._text.scrub`, so
markup, bidi overrides and control characters show as text. The page lists failed, lost and stalled
jobs first, then running, then ready (:data:`~jobprogress._states.JOB_STATES`), a page of
:data:`PAGE_SIZE` at a time: one ``counts()`` aggregate says how many jobs each state holds, and each
state's slice of the page is one ``jobs(status=…, limit=…, offset=…)`` query. A search (``q``) is the
store's: one ``jobs(status=…, search=q)`` per state picks, in SQL, the jobs whose id holds it (ignoring
case), so only the matching jobs are read.

Refreshing: ``static/jobs.js`` re-fetches the same URL with ``partial=1`` every 2 s and swaps the live
part in; without JavaScript, a ``<noscript>`` meta refresh reloads the page.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from jobprogress import _wording
from jobprogress._states import ACTIONABLE, JOB_STATES, MAX_ID_LENGTH, MAX_KIND_LENGTH, READY, STATE_GROUPS
from jobprogress._text import scrub, scrub_block

if TYPE_CHECKING:
    import jinja2
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from jobprogress.server._store import JobReader
    from jobprogress.store.views import JobView

__all__ = ["PAGE_SIZE", "SECURITY_HEADERS", "STATIC_DIR", "SecurityHeaders", "WebPages"]

PAGE_SIZE: Final = 500
MAX_PAGE: Final = 1_000_000
MAX_QUERY_LENGTH: Final = 256
REFRESH_SECONDS: Final = 2
NOSCRIPT_REFRESH_SECONDS: Final = 5
STATIC_DIR: Final = Path(__file__).parent / "static"
STATE_CHOICES: Final = ("", *STATE_GROUPS, *JOB_STATES)
"""Values of ``?state=``: all (empty), a group (actionable, ready) or one state word."""

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CSP.encode("ascii")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    """Adds the strict CSP, nosniff, no-referrer and DENY framing to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jobprogress.server", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["visible"] = scrub
    env.filters["block"] = scrub_block
    env.filters["duration"] = _wording.human_duration
    env.filters["path"] = lambda value: quote(str(value), safe="")
    env.globals.update(
        progress_line=_wording.progress_line,
        state_of=_wording.state_of,
        percent=_wording.percent,
        rate=_wording.rate,
        ago=_wording.ago,
        amount=_wording.amount,
    )
    return env


class _BadQuery(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class Filters:
    state: str = ""
    kind: str = ""
    q: str = ""
    page: int = 1

    @property
    def states(self) -> tuple[str, ...]:
        if not self.state:
            return JOB_STATES
        return STATE_GROUPS.get(self.state, (self.state,))

    def url(self, **changes: Any) -> str:
        values = {"state": self.state, "kind": self.kind, "q": self.q, "page": self.page, **changes}
        query = {
            name: value for name, value in values.items() if value and not (name == "page" and value == 1)
        }
        return "/jobs" + ("?" + urlencode(query) if query else "")


def _text(request: Request, name: str, limit: int) -> str:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise _BadQuery(f"{name} is given {len(values)} times; give it once")
    value = values[0].strip() if values else ""
    if len(value) > limit:
        raise _BadQuery(f"{name} is {len(value)} characters long; at most {limit} are allowed")
    if "\x00" in value:
        raise _BadQuery(f"{name} holds a NUL character")
    return value


def parse_filters(request: Request) -> Filters:
    """The page's filters from the query string; :class:`_BadQuery` names a bad value and the choices."""
    state = _text(request, "state", 32).lower()
    if state not in STATE_CHOICES:
        choices = ", ".join(choice for choice in STATE_CHOICES if choice)
        raise _BadQuery(f"unknown state {state!r}; choose one of: {choices} (or leave it empty for all)")
    raw_page = _text(request, "page", 16) or "1"
    if not raw_page.isdigit() or not 1 <= int(raw_page) <= MAX_PAGE:
        raise _BadQuery(f"page must be a whole number from 1 to {MAX_PAGE}, got {raw_page!r}")
    return Filters(
        state=state,
        kind=_text(request, "kind", MAX_KIND_LENGTH),
        q=_text(request, "q", MAX_QUERY_LENGTH),
        page=int(raw_page),
    )


@dataclass
class JobsPage:
    filters: Filters
    counts: dict[str, int]
    views: list[JobView] = field(default_factory=list)
    matches: int = 0

    @property
    def pages(self) -> int:
        return max(1, -(-self.matches // PAGE_SIZE))

    def rows(self, now: datetime) -> list[Row]:
        """The cells of each row, worded in Python (a Jinja loop over 500 rows with filters is slower)."""
        return [row_of(view, now) for view in self.views]


@dataclass(frozen=True)
class Row:
    job_id: str
    """Visible text (hidden characters escaped); autoescape still applies."""
    href: str
    kind: str
    state: str
    bar: int | None
    """Width class of the progress bar, 0-100 in steps of 5; None without a total."""
    progress: str
    workers: str
    updated: str


def row_of(view: JobView, now: datetime) -> Row:
    state = _wording.state_of(view)
    pct = _wording.percent(view)
    workers = _wording.workers_cell(view)
    return Row(
        job_id=scrub(view.job_id),
        href="/jobs/" + quote(view.job_id, safe=""),
        kind=scrub(view.kind) if view.kind else "-",
        state=state,
        bar=None if pct is None else int(pct // 5 * 5),
        progress=_wording.progress_line(view),
        workers=workers,
        updated=_wording.ago(_wording.last_seen(view), now),
    )


def read_page(reader: JobReader, filters: Filters) -> JobsPage:
    """The jobs of one page, in the Jobs view's order (blocking: run it on a worker thread)."""
    kind = filters.kind or None
    counts = reader.counts(kind=kind)
    page = JobsPage(filters, counts)
    offset = (filters.page - 1) * PAGE_SIZE
    if filters.q:
        # The counts do not know the search: the store picks the matching jobs (every state at once
        # unless a state is chosen), most recently seen first; they are put in the page's state order
        # here and the page is cut from them. Only matching jobs are read.
        statuses = filters.states if filters.state else (None,)
        found = [
            view for status in statuses for view in reader.jobs(status=status, kind=kind, search=filters.q)
        ]
        rank = {state: position for position, state in enumerate(filters.states)}
        matching = sorted(
            (view for view in found if _wording.state_of(view) in rank),
            key=lambda view: rank[_wording.state_of(view)],
        )
        page.matches = len(matching)
        page.views = matching[offset : offset + PAGE_SIZE]
        return page
    page.matches = sum(counts.get(state, 0) for state in filters.states)
    wanted = PAGE_SIZE
    for state in filters.states:
        held = counts.get(state, 0)
        if offset >= held:
            offset -= held
            continue
        take = min(wanted, held - offset)
        page.views.extend(reader.jobs(status=state, kind=kind, limit=take, offset=offset))
        offset, wanted = 0, wanted - take
        if wanted <= 0:
            break
    return page


class WebPages:
    """The HTML route handlers over one reader."""

    def __init__(self, reader: JobReader, *, clock: Any = None) -> None:
        self.reader = reader
        self._now = clock or (lambda: datetime.now(timezone.utc))

    def _render(self, template: str, status: int = 200, **context: Any) -> Response:
        html = (
            _environment()
            .get_template(template)
            .render(
                now=self._now(),
                refresh=REFRESH_SECONDS,
                noscript_refresh=NOSCRIPT_REFRESH_SECONDS,
                groups={"actionable": ACTIONABLE, "ready": READY},
                states=JOB_STATES,
                **context,
            )
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def _error(self, status: int, detail: str) -> Response:
        return self._render("error.html", status, detail=detail)

    async def jobs(self, request: Request) -> Response:
        try:
            filters = parse_filters(request)
        except _BadQuery as exc:
            return self._error(400, exc.detail)
        try:
            page = await run_in_threadpool(read_page, self.reader, filters)
        except Exception:
            return self._error(503, "the progress store is unavailable; this page retries by itself")
        partial = request.query_params.get("partial") == "1"
        return self._render("jobs_live.html" if partial else "jobs.html", page=page, filters=filters)

    async def job(self, request: Request) -> Response:
        job_id: str = request.path_params["job_id"]
        if not job_id or len(job_id) > MAX_ID_LENGTH or "\x00" in job_id:
            return self._error(400, f"a job id is 1 to {MAX_ID_LENGTH} characters without NUL")
        try:
            view = await run_in_threadpool(self.reader.job, job_id)
        except Exception:
            return self._error(503, "the progress store is unavailable; this page retries by itself")
        if view is None:
            return self._error(404, f"no job {scrub(job_id)!r} in the store")
        partial = request.query_params.get("partial") == "1"
        payload = sorted((view.payload or {}).items())
        return self._render(
            "job_live.html" if partial else "job.html",
            view=view,
            payload=payload,
            eta_reason=getattr(view, "eta_reason", None),
        )
