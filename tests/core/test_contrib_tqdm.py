"""jobprogress.contrib.tqdm: a real tqdm bar that also delivers the job's progress and final state."""

from __future__ import annotations

import asyncio
import gc
import importlib
import io
import pathlib
import re
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
import tqdm as upstream

import jobprogress as jp
from jobprogress.contrib.tqdm import tqdm, trange
from jobprogress.errors import InvalidProgressError, MissingExtraError
from jobprogress.store import ProgressStore
from jobprogress.testing import ProgressCapture


def words() -> Iterator[str]:
    """A generator with no len(): the bar's total stays unknown unless given."""
    yield from ("alpha", "beta", "gamma", "delta", "epsilon")


def loop(bar_type: type, **kwargs: object) -> list[str]:
    results = []
    for index, word in bar_type(enumerate(words()), file=io.StringIO(), total=5, **kwargs):
        results.append(f"{index}:{word.upper()}")
    return results


def test_converted_loop_iterates_identically_and_delivers_the_final_state(
    progress_capture: ProgressCapture,
) -> None:
    original = loop(upstream.tqdm)
    converted = loop(tqdm, job="words-1", unit="records", kind="parse")

    assert converted == original
    final = progress_capture.final("words-1")
    assert final.status.value == "succeeded"
    assert final.kind == "parse"
    last = progress_capture.last_progress("words-1")
    assert (last.items_done, last.items_total, str(last.unit)) == (5, 5, "records")
    assert progress_capture.statuses("words-1")[0] == "running"


def test_bar_still_draws_like_tqdm(progress_capture: ProgressCapture) -> None:
    expected, drawn = io.StringIO(), io.StringIO()
    list(upstream.tqdm(range(3), file=expected, unit="files", bar_format="{n_fmt}/{total_fmt} {unit}"))
    list(tqdm(range(3), job="draw", file=drawn, unit="files", bar_format="{n_fmt}/{total_fmt} {unit}"))

    assert drawn.getvalue() == expected.getvalue()
    assert drawn.getvalue().rstrip().endswith("3/3 files")


def test_total_comes_from_len(progress_capture: ProgressCapture) -> None:
    for _ in tqdm(["a", "b", "c", "d"], job="len", file=io.StringIO()):
        pass

    last = progress_capture.last_progress("len")
    assert (last.items_done, last.items_total) == (4, 4)


def test_manual_updates_in_a_with_block(progress_capture: ProgressCapture) -> None:
    with tqdm(total=10, job="download", unit="bytes", file=io.StringIO()) as bar:
        bar.update(3)
        bar.update(7)

    assert progress_capture.final("download").status.value == "succeeded"
    last = progress_capture.last_progress("download")
    assert (last.items_done, last.items_total, str(last.unit)) == (10, 10, "bytes")


def test_exception_leaving_the_with_block_fails_the_job(progress_capture: ProgressCapture) -> None:
    with pytest.raises(ValueError, match="bad row 3"):
        with tqdm(range(10), job="rows", unit="rows", file=io.StringIO()) as bar:
            for row in bar:
                if row == 3:
                    raise ValueError("bad row 3")

    final = progress_capture.final("rows")
    assert final.status.value == "failed"
    assert final.error is not None
    assert "ValueError" in final.error
    assert "bad row 3" in final.error
    # Rows 0, 1 and 2 were done; row 3 raised (tqdm counts an item once its body completes).
    assert progress_capture.last_progress("rows").items_done == 3


def test_keyboard_interrupt_in_a_with_block_cancels(progress_capture: ProgressCapture) -> None:
    def interrupted() -> None:
        with tqdm(total=2, job="ctrl-c", file=io.StringIO()) as bar:
            bar.update()
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()

    assert progress_capture.final("ctrl-c").status.value == "cancelled"


def test_break_inside_a_with_block_succeeds_when_the_block_ends(progress_capture: ProgressCapture) -> None:
    with tqdm(range(10), job="search", file=io.StringIO()) as bar:
        for item in bar:
            if item == 4:
                break
        assert progress_capture.statuses("search") == ["running"]

    assert progress_capture.final("search").status.value == "succeeded"
    assert progress_capture.last_progress("search").items_done == 4


@pytest.mark.parametrize("how", ["break", "exception"])
def test_loop_abandoned_outside_a_with_block_is_cancelled(
    how: str, progress_capture: ProgressCapture
) -> None:
    def run() -> None:
        for item in tqdm(range(10), job="abandoned", file=io.StringIO()):
            if item == 2:
                if how == "break":
                    break
                raise RuntimeError("boom")

    if how == "break":
        run()
    else:
        with pytest.raises(RuntimeError):
            run()

    assert progress_capture.final("abandoned").status.value == "cancelled"
    assert progress_capture.last_progress("abandoned").items_done == 2


def test_explicit_close_finishes_the_job(progress_capture: ProgressCapture) -> None:
    bar = tqdm(total=3, job="manual", file=io.StringIO())
    bar.update(2)
    assert progress_capture.statuses("manual") == ["running"]

    bar.close()
    bar.close()  # idempotent, as in tqdm

    assert progress_capture.statuses("manual") == ["running", "succeeded"]
    assert progress_capture.last_progress("manual").items_done == 2


def test_tracker_follows_the_bar_as_it_redraws(progress_capture: ProgressCapture) -> None:
    bar = tqdm(range(6), job="live", file=io.StringIO(), mininterval=0, miniters=1)
    iterator = iter(bar)
    for _ in range(4):
        next(iterator)
    progress_capture.flush()

    # The fourth item is handed out but not done yet; tqdm has counted three.
    assert progress_capture.last_progress("live").items_done == 3
    assert bar.tracker.done == 3
    assert list(iterator) == [4, 5]
    assert progress_capture.last_progress("live").items_done == 6


def test_current_inside_the_with_block_is_the_bars_tracker(progress_capture: ProgressCapture) -> None:
    with tqdm(total=1, job="ctx", file=io.StringIO()) as bar:
        assert jp.current() is bar.tracker
        jp.current().set_payload(stage="load")
        bar.update()

    assert progress_capture.last_progress("ctx").payload == {"stage": "load"}


@pytest.mark.parametrize("with_block", [False, True])
def test_disabled_bar_draws_nothing_but_still_tracks(
    with_block: bool, progress_capture: ProgressCapture
) -> None:
    out = io.StringIO()
    bar = tqdm(range(5), job="quiet", disable=True, file=out)
    if with_block:
        with bar:
            seen = list(bar)
    else:
        seen = list(bar)

    assert seen == [0, 1, 2, 3, 4]
    assert out.getvalue() == ""
    assert progress_capture.final("quiet").status.value == "succeeded"
    assert progress_capture.last_progress("quiet").items_done == 5


def test_disabled_manual_bar_tracks_updates(progress_capture: ProgressCapture) -> None:
    with tqdm(total=4, job="quiet-manual", disable=True) as bar:
        bar.update(1)
        bar.update(2)
        assert bar.tracker.done == 3

    assert progress_capture.last_progress("quiet-manual").items_done == 3


def test_reset_and_a_new_total_reach_the_tracker(progress_capture: ProgressCapture) -> None:
    with tqdm(total=5, job="phases", file=io.StringIO()) as bar:
        bar.update(5)
        bar.reset(total=8)
        assert (bar.tracker.done, bar.tracker.total) == (0, 8)
        bar.update(2)

    last = progress_capture.last_progress("phases")
    assert (last.items_done, last.items_total) == (2, 8)


def test_fractional_and_infinite_bar_values_become_counts(progress_capture: ProgressCapture) -> None:
    with tqdm(total=float("inf"), job="stream", unit="bytes", file=io.StringIO()) as bar:
        bar.update(1.5)
        bar.update(1.0)

    last = progress_capture.last_progress("stream")
    assert (last.items_done, last.items_total) == (2, None)


@pytest.mark.parametrize("job", ["", "   ", 42])
def test_an_explicit_job_must_be_a_non_empty_string(job: object, progress_capture: ProgressCapture) -> None:
    out = io.StringIO()
    with pytest.raises(InvalidProgressError):
        tqdm(range(3), job=job, file=out)  # type: ignore[arg-type]

    assert out.getvalue() == ""  # raised before anything was drawn
    assert progress_capture.messages == []


def test_missing_tqdm_is_a_missing_extra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # what an uninstalled package looks like to import
    monkeypatch.delitem(sys.modules, "jobprogress.contrib.tqdm")

    with pytest.raises(MissingExtraError, match=r"jobprogress-sdk\[tqdm\]"):
        importlib.import_module("jobprogress.contrib.tqdm")


def test_a_disabled_bar_closed_without_iterating_still_reports_its_job(
    progress_capture: ProgressCapture,
) -> None:
    bar = tqdm(range(5), job="closed-unused", disable=True)
    bar.close()
    assert progress_capture.statuses("closed-unused") == ["running", "succeeded"]


# -- a faithful drop-in -----------------------------------------------------------------------------


def test_no_argument_is_required_and_the_generated_job_id_is_fixed_for_the_bar(
    progress_capture: ProgressCapture,
) -> None:
    bar = tqdm(file=io.StringIO())
    job_id = bar.tracker.job_id
    assert job_id is not None
    assert re.fullmatch(r"tqdm-[0-9a-f]{8}", job_id)
    bar.update(2)
    bar.set_description("renamed")  # the job id stays what it was
    bar.close()

    assert bar.tracker.job_id == job_id
    assert progress_capture.statuses(job_id) == ["running", "succeeded"]
    assert progress_capture.last_progress(job_id).items_done == 2


def test_positional_arguments_as_in_tqdm(progress_capture: ProgressCapture) -> None:
    drawn, expected = io.StringIO(), io.StringIO()
    assert list(tqdm(range(3), "scan-7", 3, True, drawn)) == [0, 1, 2]
    list(upstream.tqdm(range(3), "scan-7", 3, True, expected))

    assert _bars(drawn) == _bars(expected)
    assert progress_capture.final("scan-7").status.value == "succeeded"


def test_job_comes_from_desc_when_not_given(progress_capture: ProgressCapture) -> None:
    for _ in tqdm(range(2), desc="  parse rows\n", file=io.StringIO()):
        pass
    with tqdm(total=1, desc="ignored", job="explicit", file=io.StringIO()) as bar:
        bar.update()

    assert progress_capture.final("parse rows").status.value == "succeeded"
    assert progress_capture.final("explicit").status.value == "succeeded"
    assert progress_capture.for_job("ignored") == []


@pytest.mark.parametrize(
    ("unit", "unit_scale", "tracked_unit", "unit_text"),
    [
        ("it", False, "iterations", None),
        ("B", True, "bytes", None),
        ("img", False, "unknown", "img"),
        ("files", False, "files", None),
        ("row", False, "rows", None),
    ],
)
def test_every_tqdm_unit_draws_as_tqdm_and_tracks_as_the_nearest_unit(
    unit: str, unit_scale: bool, tracked_unit: str, unit_text: str | None, progress_capture: ProgressCapture
) -> None:
    drawn, expected = io.StringIO(), io.StringIO()
    options = {"total": 3_000_000, "unit": unit, "unit_scale": unit_scale, "mininterval": 0, "miniters": 1}
    with tqdm(job="units", file=drawn, **options) as bar:  # type: ignore[arg-type]
        bar.update(1_000_000)
        bar.update(2_000_000)
    with upstream.tqdm(file=expected, **options) as bar:
        bar.update(1_000_000)
        bar.update(2_000_000)

    assert _bars(drawn) == _bars(expected)
    last = progress_capture.last_progress("units")
    assert (str(last.unit), last.items_done, last.items_total) == (tracked_unit, 3_000_000, 3_000_000)
    assert last.payload == (None if unit_text is None else {"unit_text": unit_text})


def test_update_is_tqdms_own_method() -> None:
    # No Python code of the bridge runs per update(): the tracker reads bar.n when it is sampled.
    assert tqdm.update is upstream.tqdm.update
    assert "update" not in vars(tqdm)


def test_the_tracker_reads_the_bars_count_and_does_not_keep_the_bar_alive(
    progress_capture: ProgressCapture,
) -> None:
    bar = tqdm(total=10, job="weak", file=io.StringIO())
    bar.update(4)
    assert bar.tracker.done == 4
    tracker = bar.tracker
    del bar
    gc.collect()

    assert tracker.status == "succeeded"  # tqdm's __del__ closed it
    assert progress_capture.last_progress("weak").items_done == 4


def test_disabled_bar_behaves_exactly_as_tqdms(progress_capture: ProgressCapture) -> None:
    out = io.StringIO()
    ours = tqdm(total=10, initial=2, job="off", disable=True, file=out)
    theirs = upstream.tqdm(total=10, initial=2, disable=True, file=out)
    for bar in (ours, theirs):
        assert bar.update(3) is None
        assert bar.update(0.5) is None
        assert bar.update(-1) is None
        assert bar.update("nonsense") is None  # tqdm returns before looking at n
        assert (bar.n, bar.total, bar.disable) == (2, 10, True)
        bar.close()

    assert out.getvalue() == ""
    # The tracker counted what tqdm did not: 2 + 3 + 0.5 - 1.
    assert progress_capture.last_progress("off").items_done == 4
    assert progress_capture.final("off").status.value == "succeeded"


def test_disable_none_on_a_non_terminal_is_disabled_but_tracked(progress_capture: ProgressCapture) -> None:
    out = io.StringIO()  # isatty() is False
    assert list(tqdm(range(4), desc="cron", disable=None, file=out)) == [0, 1, 2, 3]

    assert out.getvalue() == ""
    assert progress_capture.last_progress("cron").items_done == 4


def test_docstring_is_tqdms_with_a_paragraph_added() -> None:
    from tqdm.cli import RE_OPTS

    assert tqdm.__doc__ is not None
    assert tqdm.__doc__.startswith(upstream.tqdm.__doc__.rstrip())
    assert "jobprogress adds three optional keyword arguments" in tqdm.__doc__

    # tqdm's CLI builds its options from this docstring: the paragraph adds none and changes no type.
    def options(doc: str) -> list[tuple[str, str]]:
        return [(name, kind.splitlines()[0]) for name, kind in RE_OPTS.findall(doc)]

    assert options(tqdm.__doc__) == options(upstream.tqdm.__doc__)


def test_trange(progress_capture: ProgressCapture) -> None:
    drawn, expected = io.StringIO(), io.StringIO()
    assert list(trange(2, 8, 2, desc="steps", file=drawn)) == [2, 4, 6]
    list(upstream.trange(2, 8, 2, desc="steps", file=expected))

    assert _bars(drawn) == _bars(expected)
    last = progress_capture.last_progress("steps")
    assert (last.items_done, last.items_total) == (3, 3)


def test_auto_and_asyncio_twins(progress_capture: ProgressCapture) -> None:
    import tqdm.asyncio as upstream_asyncio
    import tqdm.auto as upstream_auto

    from jobprogress.contrib.tqdm import asyncio as bridge_asyncio
    from jobprogress.contrib.tqdm import auto as bridge_auto

    assert issubclass(bridge_auto.tqdm, upstream_auto.tqdm)
    assert issubclass(bridge_asyncio.tqdm_asyncio, upstream_asyncio.tqdm_asyncio)
    assert issubclass(bridge_asyncio.tqdm_asyncio, tqdm)
    assert bridge_asyncio.tqdm is bridge_asyncio.tqdm_asyncio
    assert bridge_asyncio.trange is bridge_asyncio.tarange

    async def numbers() -> AsyncIterator[int]:
        for number in range(3):
            yield number

    async def main() -> list[int]:
        seen = [n async for n in bridge_asyncio.tqdm(numbers(), desc="async-on", file=io.StringIO())]
        seen += [n async for n in bridge_asyncio.tarange(2, desc="async-off", disable=True)]
        gathered = await bridge_asyncio.tqdm_asyncio.gather(
            *(asyncio.sleep(0, result=n) for n in range(4)), desc="gathered", file=io.StringIO()
        )
        return seen + gathered

    assert asyncio.run(main()) == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    list(bridge_auto.trange(5, desc="auto", file=io.StringIO()))

    for job, done in [("async-on", 3), ("async-off", 2), ("gathered", 4), ("auto", 5)]:
        assert progress_capture.final(job).status.value == "succeeded", job
        assert progress_capture.last_progress(job).items_done == done, job


def test_an_async_loop_that_raises_fails_the_job(progress_capture: ProgressCapture) -> None:
    from jobprogress.contrib.tqdm.asyncio import tqdm_asyncio

    async def broken() -> AsyncIterator[int]:
        yield 1
        raise OSError("disk gone")

    async def main() -> None:
        async for _ in tqdm_asyncio(broken(), desc="async-broken", file=io.StringIO()):
            pass

    with pytest.raises(OSError, match="disk gone"):
        asyncio.run(main())
    final = progress_capture.final("async-broken")
    assert final.status.value == "failed"
    assert final.error is not None
    assert "disk gone" in final.error


# -- each bar reaches the store ---------------------------------------------------------------------


def test_each_bar_reaches_the_store(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'progress.db'}"
    jp.configure(sinks=[url])

    for _ in tqdm(range(7), desc="scan-store", unit="files", kind="scan", file=io.StringIO()):
        pass
    with tqdm(total=2048, job="download", unit="B", unit_scale=True, file=io.StringIO()) as bar:
        bar.update(1024)
        bar.update(1024)
    with pytest.raises(ValueError, match="bad row"):
        with tqdm(total=10, desc="parse-store", unit="rows", file=io.StringIO()) as bar:
            bar.update(3)
            raise ValueError("bad row 4")
    quiet = tqdm(total=5, desc="quiet-store", disable=True)
    quiet.update(5)
    quiet.close()
    assert jp.flush(timeout=10.0)

    with ProgressStore(url) as store:
        rows = {job: store.job(job) for job in ("scan-store", "download", "parse-store", "quiet-store")}
    seen = {
        job: (view.unit, view.done, view.total, view.status) for job, view in rows.items() if view is not None
    }
    assert seen == {
        "scan-store": ("files", 7, 7, "succeeded"),
        "download": ("bytes", 2048, 2048, "succeeded"),
        "parse-store": ("rows", 3, 10, "failed"),
        "quiet-store": ("iterations", 5, 5, "succeeded"),
    }
    scan, parse = rows["scan-store"], rows["parse-store"]
    assert scan is not None
    assert scan.kind == "scan"
    assert parse is not None
    assert parse.error is not None
    assert "bad row 4" in parse.error


def _bars(stream: io.StringIO) -> list[str]:
    """The bar states drawn, without the elapsed and rate fields that depend on timing."""
    states = [state for state in stream.getvalue().replace("\n", "\r").split("\r") if state]
    return [re.sub(r"\[\d\d:\d\d.*\]$", "[...]", state.rstrip()) for state in states]
