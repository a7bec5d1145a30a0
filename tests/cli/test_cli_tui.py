"""The Textual `watch` app, driven headless through its pilot."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from io import StringIO
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.widgets.data_table import ColumnKey, RowKey

from _cli_support import HOSTILE_ID, HOSTILE_TEXT, NOW, job, worker
from jobprogress.cli._format import sort_jobs
from jobprogress.cli._source import SourceError
from jobprogress.cli._tui import JobsApp, _JobsTable
from jobprogress.store.views import JobView

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio only


class Jobs:
    """A fetch function over a list the test changes between refreshes."""

    def __init__(self, views: Sequence[JobView]) -> None:
        self.views = list(views)
        self.error: str | None = None

    def __call__(self) -> list[JobView]:
        if self.error is not None:
            raise SourceError(self.error)
        return sort_jobs(self.views)


def make_app(jobs: Jobs, **options: object) -> JobsApp:
    # A long interval: the tests refresh with "r", so nothing races the timer.
    return JobsApp(
        jobs, source_name="sqlite:///[bold]jobs[/].db\x1b[2J", interval=3600, clock=lambda: NOW, **options
    )  # type: ignore[arg-type]


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.01)


async def refreshed(pilot: Pilot[None], app: JobsApp) -> None:
    count = app.refresh_count
    await pilot.press("r")
    await wait_for(pilot, lambda: app.refresh_count > count)
    await pilot.pause()


def rendered(app: JobsApp, widget_id: str) -> str:
    console = Console(file=StringIO(), width=160, color_system=None)
    console.print(app.query_one(widget_id, Static).content)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def three_jobs() -> list[JobView]:
    return [
        job("alpha", done=1),
        job("bravo", done=2, kind="parse", unit="rows"),
        job("charlie", done=3, status="failed", error="RuntimeError: disk full"),
    ]


async def test_list_in_display_order_and_detail_follows_the_cursor() -> None:
    app = make_app(Jobs(three_jobs()))
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.refresh_count == 1)
        await pilot.pause()
        assert app.shown_job_ids == ["charlie", "alpha", "bravo"]  # failed first
        assert app.selected_job_id == "charlie"
        assert "RuntimeError: disk full" in rendered(app, "#detail")
        await pilot.press("down")
        assert app.selected_job_id == "alpha"
        await pilot.press("down")
        assert app.selected_job_id == "bravo"
        detail = rendered(app, "#detail")
        assert "bravo" in detail
        assert "2/100 rows" in detail
        await pilot.press("up", "up", "up")
        assert app.selected_job_id == "charlie"
        await pilot.press("enter")  # into the detail panel
        assert app.query_one("#detail-scroll").has_focus
        await pilot.press("down")
        assert app.selected_job_id == "charlie"  # the arrows scroll the detail, not the list
        await pilot.press("escape")
        assert app.query_one("#jobs").has_focus
        assert "1 failed" in rendered(app, "#summary")


async def test_refresh_adds_updates_and_removes_rows_keeping_the_selection() -> None:
    jobs = Jobs(three_jobs())
    app = make_app(jobs)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.refresh_count == 1)
        await pilot.press("down", "down")
        assert app.selected_job_id == "bravo"
        jobs.views = [
            job("alpha", done=50),
            job("bravo", done=2, kind="parse", unit="rows", lost=True),  # now lost: moves up
            job("delta", done=0),
        ]
        await refreshed(pilot, app)
        assert app.shown_job_ids == ["bravo", "alpha", "delta"]
        assert app.selected_job_id == "bravo"  # the cursor followed its job
        table = app.query_one("#jobs", DataTable)
        assert table.get_cell("alpha", "progress").plain.startswith("50/100 files")
        assert table.get_cell("bravo", "status").plain == "lost"
        assert "lost" in rendered(app, "#detail")


async def test_filter_and_actionable_only() -> None:
    app = make_app(Jobs(three_jobs()))
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.refresh_count == 1)
        await pilot.press("slash", "b", "r", "a")
        assert app.shown_job_ids == ["bravo"]
        assert "showing 1" in rendered(app, "#summary")
        await pilot.press("enter")  # keep the filter, back to the list
        await pilot.press("q")  # in the list, q quits; it was not typed into the filter
        await pilot.pause()
    assert app.return_code == 0

    app = make_app(Jobs(three_jobs()))
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.refresh_count == 1)
        await pilot.press("f", "p", "a", "r", "s", "e")  # matches the kind column too
        assert app.shown_job_ids == ["bravo"]
        await pilot.press("escape")
        assert app.shown_job_ids == ["charlie", "alpha", "bravo"]
        await pilot.press("slash", "q")  # typed into the filter box, so it does not quit
        assert app.is_running
        assert app.shown_job_ids == []
        await pilot.press("escape")
        await pilot.press("a")
        assert app.shown_job_ids == ["charlie"]
        await pilot.press("a")
        assert app.shown_job_ids == ["charlie", "alpha", "bravo"]


async def test_a_failing_source_is_shown_and_the_last_list_kept() -> None:
    jobs = Jobs(three_jobs())
    app = make_app(jobs)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.refresh_count == 1)
        jobs.error = "cannot read sqlite:///jobs.db: disk I/O error"
        await pilot.press("r")
        await wait_for(pilot, lambda: "disk I/O error" in rendered(app, "#summary"))
        assert app.shown_job_ids == ["charlie", "alpha", "bravo"]
        jobs.error = None
        await refreshed(pilot, app)
        assert "disk I/O error" not in rendered(app, "#summary")
        jobs.views = None  # type: ignore[assignment]  # any unexpected failure is shown the same way
        await pilot.press("r")
        await wait_for(pilot, lambda: "refresh failed: TypeError" in rendered(app, "#summary"))
        jobs.views = three_jobs()
        await refreshed(pilot, app)  # and the next refresh still runs
        assert "refresh failed" not in rendered(app, "#summary")


async def test_hostile_strings_show_literally_in_the_app() -> None:
    hostile = job(
        HOSTILE_ID,
        kind=f"k{HOSTILE_TEXT}",
        status="failed",
        error=HOSTILE_TEXT,
        payload={"note": HOSTILE_TEXT},
        workers=[worker(HOSTILE_ID, status="failed", error=HOSTILE_TEXT)],
    )
    app = make_app(Jobs([hostile, job("plain")]))
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.refresh_count == 1)
        await pilot.pause()
        table = app.query_one("#jobs", DataTable)
        cells = [cell.plain for cell in table.get_row(HOSTILE_ID)]
        assert cells[0] == "[/][bold]:warning:\\u202eid"  # the bidi override escaped, the markup is text
        assert all("\x1b" not in cell and "\r" not in cell for cell in cells)
        detail = rendered(app, "#detail")
        assert "A[/]B[bold]B:warning:B\\x1b[2JB\\x1b]0;x\\x07B B\\u202eZ" in detail
        assert "\x1b" not in detail
        assert "\u202e" not in detail
        screenshot = app.export_screenshot()  # a full render of the screen, which must not raise
        assert "warning" in screenshot
        header = app.query_one("HeaderTitle", Static).visual
        assert "sqlite:///[bold]jobs[/].db" in str(header)  # the source name is shown literally


async def test_thousands_of_jobs_arrive_in_passes_in_order() -> None:
    views = [job(f"job-{index:05d}", done=index % 100) for index in range(2_000)]
    views[1_500] = job("job-01500", status="failed", error="boom")
    app = make_app(Jobs(views))
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: len(app.shown_job_ids) == 2_000)
        assert app.shown_job_ids[0] == "job-01500"
        assert app.shown_job_ids[1:3] == ["job-00000", "job-00001"]
        table = app.query_one("#jobs", DataTable)
        assert table.row_count == 2_000
        assert [row.key.value for row in table.ordered_rows[:3]] == app.shown_job_ids[:3]
        await pilot.press("end")
        assert app.selected_job_id == "job-01999"


async def test_a_batch_of_cell_changes_goes_through_update_cell_and_repaints_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = make_app(Jobs([job(f"job-{index:03d}", done=1) for index in range(300)]))
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: len(app.shown_job_ids) == 300)
        await pilot.pause()
        table = app.query_one("#jobs", _JobsTable)
        repaints: list[object] = []
        written: list[object] = []
        refresh, update_cell = Widget.refresh, DataTable.update_cell

        def counting_refresh(self: Widget, *regions: Any, **options: Any) -> Widget:
            if self is table:
                repaints.append(regions)
            return refresh(self, *regions, **options)

        def counting_update_cell(self: DataTable[Text], *args: Any, **options: Any) -> None:
            written.append(args)
            update_cell(self, *args, **options)

        monkeypatch.setattr(Widget, "refresh", counting_refresh)
        monkeypatch.setattr(DataTable, "update_cell", counting_update_cell)
        updated = ColumnKey("updated")
        table.update_cells([(RowKey(f"job-{index:03d}"), updated, Text(f"{index}s")) for index in range(300)])
        assert (len(written), len(repaints)) == (300, 1)  # the public method per cell, one repaint
        assert table.get_cell("job-299", "updated").plain == "299s"
        table.update_cell("job-000", "updated", Text("later"))  # outside a batch, repaints as usual
        assert len(repaints) == 2
        await pilot.pause()
        assert "later" in app.export_screenshot()
