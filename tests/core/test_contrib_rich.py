"""jobprogress.contrib.rich: rich's own rendering, byte for byte, with each task tracked as a job."""

from __future__ import annotations

import io
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
import rich.progress as upstream
from rich.console import Console

import jobprogress as jp
from jobprogress.contrib import rich as bridge
from jobprogress.store import ProgressStore
from jobprogress.testing import ProgressCapture


class Clock:
    """A fake clock that moves one second at each reading: spinners and speeds move, deterministically."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def console() -> Console:
    return Console(
        file=io.StringIO(),
        record=True,
        force_terminal=True,
        width=100,
        color_system="truecolor",
        legacy_windows=False,
    )


def several_tasks(module: Any, out: Console) -> None:
    with module.Progress(console=out, get_time=Clock(), auto_refresh=False) as progress:
        scan = progress.add_task("[cyan]scan", total=10, job="scan-r", unit="files")
        parse = progress.add_task("parse", total=4)
        for _ in range(10):
            progress.advance(scan)
            progress.refresh()
        progress.update(parse, advance=2, refresh=True)
        progress.update(parse, total=8, completed=5, description="parse (more)", refresh=True)


def tracked(module: Any, out: Console) -> None:
    for _ in module.track(range(5), description="rows", console=out, get_time=Clock(), auto_refresh=False):
        pass


def transient(module: Any, out: Console) -> None:
    with module.Progress(console=out, get_time=Clock(), auto_refresh=False, transient=True) as progress:
        task = progress.add_task("temporary", total=3)
        for _ in range(3):
            progress.advance(task)
            progress.refresh()


def no_total(module: Any, out: Console) -> None:
    columns = (upstream.SpinnerColumn(), *upstream.Progress.get_default_columns())
    with module.Progress(*columns, console=out, get_time=Clock(), auto_refresh=False) as progress:
        task = progress.add_task("open-ended", total=None)
        for _ in range(4):
            progress.advance(task, 3)
            progress.refresh()


def byte_columns(module: Any, out: Console) -> None:
    columns = (
        upstream.TextColumn("{task.description}"),
        upstream.BarColumn(),
        upstream.DownloadColumn(),
        upstream.TransferSpeedColumn(),
        upstream.TimeRemainingColumn(),
    )
    with module.Progress(*columns, console=out, get_time=Clock(), auto_refresh=False) as progress:
        task = progress.add_task("download", total=5_000_000, unit="B")
        for _ in range(5):
            progress.update(task, advance=1_000_000, refresh=True)


def exception_inside(module: Any, out: Console) -> None:
    with pytest.raises(RuntimeError, match="network down"):
        with module.Progress(console=out, get_time=Clock(), auto_refresh=False) as progress:
            task = progress.add_task("fetch", total=10)
            progress.update(task, advance=4, refresh=True)
            raise RuntimeError("network down")


SCENARIOS: dict[str, Callable[[Any, Console], None]] = {
    "several tasks": several_tasks,
    "track()": tracked,
    "transient": transient,
    "no total": no_total,
    "byte columns": byte_columns,
    "exception inside": exception_inside,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_rendering_is_byte_identical_to_rich(scenario: str, progress_capture: ProgressCapture) -> None:
    theirs, ours = console(), console()
    SCENARIOS[scenario](upstream, theirs)
    SCENARIOS[scenario](bridge, ours)

    assert isinstance(ours.file, io.StringIO)
    assert isinstance(theirs.file, io.StringIO)
    assert ours.file.getvalue() == theirs.file.getvalue()
    assert ours.export_text(styles=True) == theirs.export_text(styles=True)
    assert progress_capture.job_ids()  # the bridge did track


def test_each_task_is_a_job(progress_capture: ProgressCapture) -> None:
    several_tasks(bridge, console())

    scan = progress_capture.last_progress("scan-r")
    assert (str(scan.unit), scan.items_done, scan.items_total) == ("files", 10, 10)
    parse = progress_capture.last_progress("parse")  # the description, as the job id
    assert (str(parse.unit), parse.items_done, parse.items_total) == ("unknown", 5, 8)
    assert progress_capture.final("scan-r").status.value == "succeeded"
    assert progress_capture.final("parse").status.value == "succeeded"


def test_track_is_a_job(progress_capture: ProgressCapture) -> None:
    tracked(bridge, console())

    assert progress_capture.final("rows").status.value == "succeeded"
    assert progress_capture.last_progress("rows").items_done == 5


def test_an_exception_fails_unfinished_tasks(progress_capture: ProgressCapture) -> None:
    exception_inside(bridge, console())

    final = progress_capture.final("fetch")
    assert final.status.value == "failed"
    assert final.error is not None
    assert "network down" in final.error
    assert progress_capture.last_progress("fetch").items_done == 4


def test_removed_task_ends_its_job(progress_capture: ProgressCapture) -> None:
    with bridge.Progress(console=console(), auto_refresh=False) as progress:
        done = progress.add_task("finished", total=2, job="removed-done")
        progress.advance(done, 2)
        progress.remove_task(done)
        half = progress.add_task("half", total=2, job="removed-half")
        progress.advance(half)
        progress.remove_task(half)
        assert progress_capture.statuses("removed-done")[-1] == "succeeded"
        assert progress_capture.statuses("removed-half")[-1] == "cancelled"


def test_byte_unit_and_bad_job(progress_capture: ProgressCapture) -> None:
    byte_columns(bridge, console())
    last = progress_capture.last_progress("download")
    assert (str(last.unit), last.items_done) == ("bytes", 5_000_000)

    with bridge.Progress(console=console(), auto_refresh=False) as progress:
        with pytest.raises(jp.InvalidProgressError):
            progress.add_task("x", job="")
        assert progress.tasks == []  # refused before the task was added


def test_tasks_reach_the_store(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'progress.db'}"
    jp.configure(sinks=[url])
    several_tasks(bridge, console())
    with pytest.raises(RuntimeError, match="network down"):
        _raise_inside()
    assert jp.flush(timeout=10.0)

    with ProgressStore(url) as store:
        views = {job: store.job(job) for job in ("scan-r", "parse", "fetch-store")}
    seen = {job: (view.unit, view.done, view.total, view.status) for job, view in views.items() if view}
    assert seen == {
        "scan-r": ("files", 10, 10, "succeeded"),
        "parse": ("unknown", 5, 8, "succeeded"),
        "fetch-store": ("bytes", 4, 10, "failed"),
    }


def _raise_inside() -> None:
    with bridge.Progress(console=console(), auto_refresh=False) as progress:
        task = progress.add_task("fetch-store", total=10, unit="bytes")
        progress.advance(task, 4)
        raise RuntimeError("network down")
