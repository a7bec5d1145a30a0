"""The Jobs pages (``/jobs``, ``/jobs/{id}``) over a real SQLite store: order, wording, filters, paging,
escaping, headers and who may read them. The browser's side (refresh, JS off) is in tests/web/."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from _http_support import TOKEN, running_app
from _server_support import POSTGRES_URL
from _web_support import READ_TOKEN, XSS_ID, SeededStore, seeded_store
from jobprogress.errors import ConfigurationError
from jobprogress.server import _web, create_app, create_web_app
from jobprogress.store.views import JobView, WorkerView


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededStore]:
    with seeded_store(tmp_path) as store:
        yield store


@pytest.fixture
def pages(seeded: SeededStore) -> Iterator[httpx.Client]:
    app = create_web_app(open_read=True, reader=seeded.reader)
    with running_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def job_order(html: str) -> list[str]:
    return [
        value.replace("&lt;", "<").replace("&gt;", ">")
        for value in re.findall(r'<tr class="state-[a-z]+" data-job="([^"]*)"', html)
    ]


def test_jobs_list_actionable_first_then_running_then_ready(pages: httpx.Client) -> None:
    response = pages.get("/jobs")
    assert response.status_code == 200
    assert job_order(response.text) == [
        "parse-failed",
        "scan-lost",
        "scan-stalled",
        XSS_ID,
        "scan-running",
        "backtest-done",
        "eval-cancelled",
    ]
    text = response.text
    # State in words, beside any colour; per-kind progress lines.
    for word in ("failed", "lost", "stalled", "running", "succeeded", "cancelled"):
        assert f'<span class="badge state-{word}">{word}</span>' in text
    assert "812/4,000 rows · ValueError: row 812 has 3 columns, expected 4" in text
    assert "80/200 files · 4.0 files/s · ETA 30s" in text
    assert "500/500 iterations · pass 98.0%" in text
    assert "2 (2 lost)" in text  # the lost job's workers
    assert "7 jobs" in text


def test_markup_in_ids_and_payloads_is_text(pages: httpx.Client) -> None:
    text = pages.get("/jobs").text
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert '<a href="/jobs/%3Cscript%3Ealert%281%29%3C%2Fscript%3E">' in text
    detail = pages.get("/jobs/" + XSS_ID)
    assert detail.status_code == 200
    assert "<script>alert" not in detail.text
    assert "<b>x</b>" not in detail.text
    assert "&lt;b&gt;x&lt;/b&gt;" in detail.text


class _OneJob:
    """A reader holding one job an older store kept with hidden characters in its id and error."""

    def __init__(self, view: JobView) -> None:
        self.view = view

    def counts(self, *, kind: str | None = None) -> dict[str, int]:
        return {"failed": 1}

    def jobs(self, **filters: Any) -> list[JobView]:
        return [self.view] if filters.get("status") in (None, "failed") else []

    def job(self, job_id: str) -> JobView | None:
        return self.view if job_id == self.view.job_id else None

    def close(self) -> None:
        pass


def test_bidi_and_control_characters_show_as_escapes(tmp_path: Path) -> None:
    error = "boom\x07\u2028\r\nat line 2"
    job_id = "report\u202egpj.exe\x1b[31m"
    worker = WorkerView.model_construct(
        worker_id="w\u200b1", kind="scan", unit="files", done=1, total=2, throughput=None, eta_seconds=None,
        status="failed", stalled=False, lost=False, updated_at=None, error=error, payload=None,
        run_id="r", seq=1, started_at=None, progressed_at=None, seen_at=None, attempt=1,
    )  # fmt: skip
    view = JobView.model_construct(
        job_id=job_id, kind="scan", unit="files", done=1, total=2, throughput=None, eta_seconds=None,
        status="failed", stalled=False, lost=False, updated_at=None, error=error,
        payload={"k\u202e": "v\x00"}, workers=[worker], attempt=1,
    )  # fmt: skip
    app = create_web_app(open_read=True, reader=_OneJob(view))
    with running_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        listing = client.get("/jobs").text
        detail = client.get("/jobs/" + quote(job_id, safe="")).text
    for text in (listing, detail):
        assert "\u202e" not in text
        assert "\x1b" not in text
        assert "\x07" not in text
        assert "\u200b" not in text
        assert "\u2028" not in text
        assert "\r" not in text
        assert "report\\u202egpj.exe\\x1b[31m" in text
    # The failure detail keeps its lines (a traceback); a line separator is a space, as on a terminal.
    assert "boom\\x07 \nat line 2" in detail
    assert "k\\u202e" in detail
    assert "v\\x00" in detail
    assert "w\\u200b1" in detail


def test_filters_are_query_parameters(pages: httpx.Client) -> None:
    assert job_order(pages.get("/jobs?state=actionable").text) == [
        "parse-failed",
        "scan-lost",
        "scan-stalled",
    ]
    assert job_order(pages.get("/jobs?state=ready").text) == ["backtest-done", "eval-cancelled"]
    assert job_order(pages.get("/jobs?state=stalled").text) == ["scan-stalled"]
    assert job_order(pages.get("/jobs?kind=parse").text) == ["parse-failed"]
    assert job_order(pages.get("/jobs?q=SCAN-R").text) == ["scan-running"]
    assert job_order(pages.get("/jobs?q=columns").text) == []  # the job id only, not the error text
    assert job_order(pages.get("/jobs", params={"q": "%"}).text) == []  # literal, not a wildcard
    assert job_order(pages.get("/jobs", params={"q": "alert(1)"}).text) == [XSS_ID]
    assert job_order(pages.get("/jobs?state=running&q=nothing-like-this").text) == []
    kept = pages.get("/jobs?state=running&kind=scan").text
    assert 'value="scan"' in kept
    assert '<option value="running" selected>' in kept


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("state=bogus", "unknown state &#39;bogus&#39;; choose one of: actionable, ready, failed, lost"),
        ("page=0", "page must be a whole number from 1"),
        ("page=x", "page must be a whole number from 1"),
        ("kind=" + "k" * 65, "kind is 65 characters long; at most 64"),
        ("state=lost&state=failed", "state is given 2 times"),
        ("q=" + "x" * 257, "q is 257 characters long; at most 256"),
        ("q=a%00b", "q holds a NUL character"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(pages: httpx.Client, query: str, named: str) -> None:
    response = pages.get("/jobs?" + query)
    assert response.status_code == 400
    assert named in response.text


def test_pages_of_the_list(pages: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_web, "PAGE_SIZE", 3)
    first, second, third = (pages.get(f"/jobs?page={n}").text for n in (1, 2, 3))
    assert job_order(first) == ["parse-failed", "scan-lost", "scan-stalled"]
    assert job_order(second) == [XSS_ID, "scan-running", "backtest-done"]  # across the state boundary
    assert job_order(third) == ["eval-cancelled"]
    assert 'rel="next" href="/jobs?page=2"' in first
    assert "page 1 of 3" in first
    assert 'rel="prev" href="/jobs?page=2"' in third
    assert 'rel="next"' not in third
    filtered = pages.get("/jobs?state=actionable&q=scan&page=1").text
    assert job_order(filtered) == ["scan-lost", "scan-stalled"]
    # A search pages too, across the states' boundaries: the store picks the ids holding "s".
    searched = [pages.get(f"/jobs?q=S&page={n}").text for n in (1, 2, 3)]
    assert job_order(searched[0]) == ["parse-failed", "scan-lost", "scan-stalled"]
    assert job_order(searched[1]) == [XSS_ID, "scan-running", "backtest-done"]
    assert job_order(searched[2]) == []
    assert "page 2 of 2" in searched[1]
    assert "6 shown by the filters" in searched[1]


def test_detail_page(pages: httpx.Client) -> None:
    failed = pages.get("/jobs/parse-failed").text
    assert '<pre class="error">ValueError: row 812 has 3 columns, expected 4</pre>' in failed
    assert '<th scope="row">file</th><td>big.csv</td>' in failed
    lost = pages.get("/jobs/scan-lost").text
    assert lost.count('<tr class="state-lost">') == 2  # one row per worker
    assert "Workers (2)" in lost
    missing = pages.get("/jobs/no-such-job")
    assert missing.status_code == 404
    assert "no job &#39;no-such-job&#39;" in missing.text


def test_the_live_fragment_is_the_part_the_script_swaps_in(pages: httpx.Client, seeded: SeededStore) -> None:
    fragment = pages.get("/jobs?partial=1").text
    assert "<html" not in fragment
    assert '<table class="jobs"' in fragment
    seeded.advance("scan-running", 77)
    assert "117/200 files" in pages.get("/jobs?partial=1").text
    assert "<html" not in pages.get("/jobs/scan-running?partial=1").text


def test_security_headers_and_no_writes(pages: httpx.Client) -> None:
    for path in ("/jobs", "/jobs/scan-running", "/static/jobs.js", "/jobs?state=bogus"):
        headers = pages.get(path).headers
        assert headers["content-security-policy"] == (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    assert pages.get("/static/jobs.css").headers["content-type"].startswith("text/css")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert pages.request(method, "/jobs").status_code == 405
        assert pages.request(method, "/jobs/scan-running").status_code == 405


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"anyone:{password}".encode()).decode()}


def test_reading_needs_a_token_unless_open(seeded: SeededStore) -> None:
    app = create_app(
        seeded.url, token=TOKEN, read_token=READ_TOKEN, writer=seeded.writer, reader=seeded.reader
    )
    with running_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        refused = client.get("/jobs")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Basic realm="jobprogress (read)"')
        assert "parse-failed" not in refused.text
        assert client.get("/jobs/parse-failed").status_code == 401
        assert client.get("/jobs", headers=_basic("wrong")).status_code == 401
        assert client.get("/jobs", params={"token": READ_TOKEN}).status_code == 401  # never in a URL
        for good in (_basic(TOKEN), _basic(READ_TOKEN), {"Authorization": f"Bearer {READ_TOKEN}"}):
            assert "parse-failed" in client.get("/jobs", headers=good).text
        metrics = client.get("/metrics")
        assert metrics.status_code == 401
        assert metrics.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"}).status_code == 200
        # The read token reads the JSON API too, and writes nothing.
        assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {READ_TOKEN}"}).status_code == 200
        write = client.post(
            "/v1/progress", headers={"Authorization": f"Bearer {READ_TOKEN}"}, json={"job_id": "x"}
        )
        assert write.status_code == 401
        # Probes and the static files hold no job data: open.
        for path in ("/healthz", "/readyz", "/static/jobs.css"):
            assert client.get(path).status_code == 200


def test_the_web_app_is_open_only_when_asked(seeded: SeededStore) -> None:
    with pytest.raises(ConfigurationError, match=r"--read-token-file PATH.*--open"):
        create_web_app(reader=seeded.reader)
    with pytest.raises(ConfigurationError, match="not both"):
        create_web_app(reader=seeded.reader, read_token=READ_TOKEN, open_read=True)
    app = create_web_app(reader=seeded.reader, read_token=READ_TOKEN)
    with running_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/jobs").status_code == 401
        assert client.get("/jobs", headers=_basic(READ_TOKEN)).status_code == 200
        assert client.get("/", follow_redirects=False).headers["location"] == "/jobs"


class _Broken(_OneJob):
    def counts(self, *, kind: str | None = None) -> dict[str, int]:
        raise OSError("database is down")

    def job(self, job_id: str) -> JobView | None:
        raise OSError("database is down")


def test_readyz_and_an_unavailable_store(seeded: SeededStore) -> None:
    app = create_web_app(open_read=True, reader=_Broken(seeded.reader.job("scan-running")))  # type: ignore[arg-type]
    with running_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        page = client.get("/jobs")
        assert page.status_code == 503
        assert "the progress store is unavailable" in page.text
        assert client.get("/jobs/x").status_code == 503
        assert "jobprogress_store_up 0.0" in client.get("/metrics").text


def test_readiness_is_reused_for_a_second() -> None:
    import anyio

    from jobprogress.server._routes import Readiness

    class Counting:
        probes = 0

        def ping(self) -> None:
            self.probes += 1

    now = [0.0]
    store = Counting()
    readiness = Readiness(store, clock=lambda: now[0])

    async def probe_many() -> None:
        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(readiness._ready)

    anyio.run(probe_many)
    assert store.probes == 1  # twenty anonymous probes, one store query
    now[0] = 1.5
    anyio.run(probe_many)
    assert store.probes == 2


@pytest.mark.postgres
def test_the_list_on_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not POSTGRES_URL:
        pytest.skip("set JOBPROGRESS_TEST_POSTGRES_URL to run the Postgres cases")
    from sqlalchemy import create_engine

    from jobprogress.store.schema import drop_schema

    prefix = f"w{uuid.uuid4().hex[:10]}_"
    try:
        with seeded_store(tmp_path, POSTGRES_URL, prefix) as store:
            app = create_web_app(open_read=True, reader=store.reader)
            with running_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
                everything = ["parse-failed", "scan-lost", "scan-stalled", XSS_ID, "scan-running"]
                assert job_order(client.get("/jobs").text) == [*everything, "backtest-done", "eval-cancelled"]
                assert job_order(client.get("/jobs?state=actionable&q=SCAN").text) == [
                    "scan-lost",
                    "scan-stalled",
                ]
                monkeypatch.setattr(_web, "PAGE_SIZE", 3)
                assert job_order(client.get("/jobs?page=2").text) == [XSS_ID, "scan-running", "backtest-done"]
                assert "Workers (2)" in client.get("/jobs/scan-lost").text
                assert 'jobprogress_jobs{state="stalled"} 1.0' in client.get("/metrics").text
    finally:
        engine = create_engine(POSTGRES_URL)
        try:
            drop_schema(engine, prefix)
        finally:
            engine.dispose()
