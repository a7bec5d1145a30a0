"""``jobprogress watch``: the live full-screen Jobs view (Textual).

The Jobs list is a :class:`~textual.widgets.DataTable`; below it, the detail panel of the selected job.
Every ``interval`` seconds a thread worker reads the jobs and builds the row cells off the UI thread;
the UI thread then applies only what changed (cells updated in place, rows added or removed, one sort
when the order changed), so a refresh over 10,000 jobs stays cheap and the cursor stays on its job.

Keys: arrows, PageUp/PageDown and Home/End move, ``enter`` scrolls the detail panel (``escape`` comes
back), ``/`` or ``f`` filters by text, ``a`` shows actionable jobs only, ``r`` refreshes now, ``escape``
clears the filter, ``q`` quits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar, Final

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.widgets.data_table import ColumnKey, RowKey

from jobprogress._states import ACTIONABLE
from jobprogress.store.views import JobView

from ._format import job_row, summary_line
from ._render import job_detail, progress_style, state_text
from ._safe import scrub
from ._source import SourceError

if TYPE_CHECKING:
    from textual.geometry import Region
    from typing_extensions import Self

__all__ = ["JobsApp"]

_COLUMNS: Final = (
    ("job", "Job", None),
    ("kind", "Kind", 11),
    ("status", "Status", 9),
    ("progress", "Progress", 44),
    ("workers", "Workers", 10),
    ("updated", "Updated", 8),
)
"""Key, label and width of each column; None fits the content (measured once, when a row is added)."""

_NCOLUMNS: Final = len(_COLUMNS)

# Removing a DataTable row costs O(rows): past this many removals, rebuilding the table is cheaper.
_REBUILD_AFTER_REMOVALS: Final = 50
# Adding a row costs a measurement of each of its cells; 10,000 at once would freeze the UI for seconds.
_ADD_ROWS_PER_PASS: Final = 500

Cells = tuple[str, str, str, str, str, str]


class _JobCell(Text):
    """The job-id cell; it carries the raw job id so rows can be sorted by their display rank."""

    def __init__(self, text: str, job_id: str) -> None:
        super().__init__(text, style="bold", end="", no_wrap=True, overflow="ellipsis")
        self.job_id = job_id


class _JobsTable(DataTable[Text]):
    """A DataTable that takes a refresh's cell changes in one batch; Home/End go to the first/last job."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home,g", "scroll_top", "First", show=False),
        Binding("end,G", "scroll_bottom", "Last", show=False),
    ]

    _repaint_held = False

    def update_cells(self, changes: Sequence[tuple[RowKey, ColumnKey, Text]]) -> None:
        """Set many cells with ``update_cell``, then repaint once.

        ``update_cell`` asks for a whole-table repaint on every call, and each request costs as much
        as writing the cell ten times over (10,000 changed cells: about 0.3 s of UI time instead of
        20 ms). Those requests are held back while the batch is written; one repaint follows. The keys
        are the very objects ``add_row``/``add_column`` returned: the table finds those by identity,
        where a string or an equal new key costs two more comparisons in Python per lookup.
        """
        self._repaint_held = True
        try:
            for row_key, column_key, value in changes:
                self.update_cell(row_key, column_key, value)
        finally:
            self._repaint_held = False
        self.refresh()

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> Self:
        """Widget.refresh, except the plain whole-table repaints asked for inside :meth:`update_cells`."""
        if self._repaint_held and not regions and repaint and not layout and not recompose:
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)


# Columns with few distinct values (kind, status, workers, updated): their Text objects are shared, since
# a DataTable only reads its cells. Over 10,000 rows this saves most of the allocations of a refresh.
_SHARED_COLUMNS: Final = frozenset({1, 2, 4, 5})
_SHARED_TEXTS_MAX: Final = 4096
_shared_texts: dict[tuple[int, str], Text] = {}


def _cell_text(column: int, job_id: str, cells: Cells) -> Text:
    """The Text of one cell (built only for cells that are new or changed)."""
    if column == 0:
        return _JobCell(cells[0], job_id)
    value = cells[column]
    if column in _SHARED_COLUMNS:
        shared = _shared_texts.get((column, value))
        if shared is not None:
            return shared
    if column == 2:
        text = state_text(value)
    else:
        style = "dim" if column == 5 else progress_style(cells[2]) if column == 3 else ""
        text = Text(value, style=style, end="", no_wrap=True, overflow="ellipsis")
    if column in _SHARED_COLUMNS:
        if len(_shared_texts) >= _SHARED_TEXTS_MAX:
            _shared_texts.clear()
        _shared_texts[(column, value)] = text
    return text


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class JobsApp(App[None]):
    """The live Jobs view over any source of jobs.

    Args:
        fetch: Returns the jobs in display order (actionable, running, ready); called from a worker
            thread, so it may block. A :class:`~jobprogress.cli._source.SourceError` it raises is shown
            in the status line and the last good list stays on screen.
        source_name: What the header names as the source (e.g. the database URL without password).
        interval: Seconds between refreshes.
        banner: Called at each refresh (in the worker thread); its text ends the status line.
        clock: The current time, for "updated … ago" (injectable for tests).
    """

    TITLE = "jobprogress"
    CSS = """
    #summary { height: 1; padding: 0 1; }
    #filter { display: none; }
    #filter.visible { display: block; }
    #jobs { height: 3fr; }
    #detail-scroll { height: 2fr; border-top: solid $primary; }
    #detail { padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("r", "refresh_now", "Refresh"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("f", "filter", "Filter", show=False),
        Binding("a", "toggle_actionable", "Actionable only"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(
        self,
        fetch: Callable[[], Sequence[JobView]],
        *,
        source_name: str = "",
        interval: float = 1.0,
        banner: Callable[[], str] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__()
        self._banner = banner
        self._fetch = fetch
        self._source_name = scrub(source_name)
        self._interval = interval
        self._clock = clock
        self._views: dict[str, JobView] = {}
        self._cells: dict[str, Cells] = {}
        self._order: list[str] = []
        self._shown: dict[str, Cells] = {}
        self._row_keys: dict[str, RowKey] = {}
        self._column_keys: tuple[ColumnKey, ...] = ()
        self._shown_order: list[str] = []
        self._detail_view: JobView | None = None
        self._loading = False
        self._more_rows_scheduled = False
        self._text_filter = ""
        self._actionable_only = False
        self._error: str | None = None
        self._refreshed_at: datetime | None = None
        self._summary = "loading…"
        self.refresh_count = 0
        """How many fetches have been applied (tests wait on it)."""
        self.last_refresh_seconds: float | None = None
        """Wall time of the last fetch plus row building, in seconds."""

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter by job, kind or status; enter to keep, escape to clear", id="filter")
        yield Static(Text("loading…"), id="summary")
        yield _JobsTable(id="jobs", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="detail-scroll"):
            yield Static(Text("no job selected", style="dim"), id="detail")
        yield Footer()

    def on_mount(self) -> None:
        # The header shows the sub-title as plain text (no markup), scrubbed like any other string.
        self.sub_title = self._source_name
        table = self.query_one("#jobs", DataTable)
        self._column_keys = tuple(
            table.add_column(label, key=key, width=width) for key, label, width in _COLUMNS
        )
        table.focus()
        self.set_interval(self._interval, self._request_refresh)
        self._request_refresh()

    # -- public read-outs (used by tests) -----------------------------------------------------

    @property
    def selected_job_id(self) -> str | None:
        """The job under the cursor, if any."""
        table = self.query_one("#jobs", DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    @property
    def shown_job_ids(self) -> list[str]:
        """The job ids in the list, top to bottom."""
        return list(self._shown_order)

    # -- refresh: fetch and build off the UI thread, apply the difference on it ---------------------

    def _request_refresh(self) -> None:
        if self._loading:  # a slow store: never pile up fetches
            return
        self._loading = True
        self._load()

    @work(thread=True, group="load", exit_on_error=False)
    def _load(self) -> None:
        started = time.perf_counter()
        try:
            views = list(self._fetch())
            now = self._clock()
            cells = {view.job_id: job_row(view, now) for view in views}
            summary = summary_line(views)
            banner = self._banner() if self._banner is not None else ""
            if banner:
                summary += f" · {scrub(banner)}"
        except SourceError as exc:
            self.call_from_thread(self._apply_error, str(exc))
            return
        except Exception as exc:  # a live view keeps refreshing: show the error instead of freezing
            self.call_from_thread(self._apply_error, f"refresh failed: {type(exc).__name__}: {exc}")
            return
        elapsed = time.perf_counter() - started
        self.call_from_thread(self._apply, views, cells, summary, now, elapsed)

    def _apply_error(self, message: str) -> None:
        self._loading = False
        self._error = scrub(message)
        self._update_summary()

    def _apply(
        self, views: list[JobView], cells: dict[str, Cells], summary: str, now: datetime, elapsed: float
    ) -> None:
        self._loading = False
        self._summary = summary
        self._error = None
        self._views = {view.job_id: view for view in views}
        self._cells = cells
        self._order = [view.job_id for view in views]
        self._refreshed_at = now
        self.last_refresh_seconds = elapsed
        self._sync_table()
        self.refresh_count += 1

    def _visible(self, job_id: str) -> bool:
        cells = self._cells[job_id]
        if self._actionable_only and cells[2] not in ACTIONABLE:
            return False
        if self._text_filter:
            needle = self._text_filter
            return any(needle in cell.lower() for cell in cells[:3])
        return True

    def _sync_table(self) -> None:
        table = self.query_one("#jobs", _JobsTable)
        selected = self.selected_job_id
        order = [job_id for job_id in self._order if self._visible(job_id)]
        wanted = set(order)
        removed = [job_id for job_id in self._shown if job_id not in wanted]
        if len(removed) > _REBUILD_AFTER_REMOVALS:
            table.clear()
            self._shown = {}
            self._row_keys = {}
        else:
            for job_id in removed:
                table.remove_row(self._row_keys.pop(job_id))
                del self._shown[job_id]
        # The table's order after removals; rows added below go to its end.
        table_order = [job_id for job_id in self._shown_order if job_id in self._shown]
        added = 0
        changes: list[tuple[RowKey, ColumnKey, Text]] = []
        for job_id in order:
            new = self._cells[job_id]
            old = self._shown.get(job_id)
            if old is None:
                if added == _ADD_ROWS_PER_PASS:
                    continue  # the rest comes in the next pass, so the UI answers keys in between
                self._row_keys[job_id] = table.add_row(
                    *(_cell_text(column, job_id, new) for column in range(_NCOLUMNS)), key=job_id
                )
                table_order.append(job_id)
                added += 1
            elif old != new:
                row_key = self._row_keys[job_id]
                for column in range(_NCOLUMNS):
                    if old[column] != new[column]:
                        changes.append((row_key, self._column_keys[column], _cell_text(column, job_id, new)))
            self._shown[job_id] = new
        if changes:
            table.update_cells(changes)
        present = [job_id for job_id in order if job_id in self._shown]
        if table_order != present:
            rank = {job_id: index for index, job_id in enumerate(present)}
            table.sort("job", key=lambda cell: rank[cell.job_id])
        self._shown_order = present
        if len(present) < len(order) and not self._more_rows_scheduled:
            self._more_rows_scheduled = True
            self.set_timer(0.01, self._add_more_rows)
        if selected is not None and selected in wanted:
            index = table.get_row_index(selected)
            if index != table.cursor_row:
                table.move_cursor(row=index, animate=False)
        self._update_summary()
        self._update_detail()

    def _add_more_rows(self) -> None:
        self._more_rows_scheduled = False
        self._sync_table()

    # -- status line and detail panel -----------------------------------------------------------

    def _update_summary(self) -> None:
        text = Text(self._summary, end="")
        if self._actionable_only or self._text_filter:
            text.append(f" · showing {len(self._shown_order)}", style="bold")
            if self._actionable_only:
                text.append(" actionable")
            if self._text_filter:
                text.append(" matching ")
                text.append(repr(self._text_filter), style="italic")
        if self._refreshed_at is not None:
            text.append(f" · refreshed {self._refreshed_at.astimezone().strftime('%H:%M:%S')}", style="dim")
        if self._error:
            text.append(" · ")
            text.append(self._error, style="bold red")
        self.query_one("#summary", Static).update(text)

    def _update_detail(self) -> None:
        job_id = self.selected_job_id
        view = self._views.get(job_id) if job_id is not None else None
        detail = self.query_one("#detail", Static)
        if view is None:
            if self._detail_view is not None or not self._shown_order:
                self._detail_view = None
                detail.update(Text("no job selected", style="dim"))
            return
        # Re-rendered on every refresh, even when the job did not change: its "ago" times did.
        self._detail_view = view
        detail.update(job_detail(view, self._refreshed_at or self._clock()))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail_view = None
        self._update_detail()

    # -- actions --------------------------------------------------------------------------------

    def action_refresh_now(self) -> None:
        """Read the jobs again now."""
        self._request_refresh()

    def action_filter(self) -> None:
        """Show the filter box and type into it."""
        box = self.query_one("#filter", Input)
        box.add_class("visible")
        box.focus()

    def action_clear_filter(self) -> None:
        """Back to the list: from the detail panel, or clearing the text filter."""
        table = self.query_one("#jobs", DataTable)
        if self.query_one("#detail-scroll", VerticalScroll).has_focus:
            table.focus()
            return
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("visible")
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # Enter on a job: scroll its detail with the arrows; escape goes back to the list.
        self.query_one("#detail-scroll", VerticalScroll).focus()

    def action_toggle_actionable(self) -> None:
        """Show only failed, lost and stalled jobs, or everything again."""
        self._actionable_only = not self._actionable_only
        if self._cells:
            self._sync_table()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._text_filter = event.value.strip().lower()
        if self._cells:
            self._sync_table()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.remove_class("visible")
        self.query_one("#jobs", DataTable).focus()
