"""jobprogress.contrib.tqdm: a real tqdm bar that also delivers the job's progress and final state."""

from __future__ import annotations

import importlib
import io
import sys
from collections.abc import Iterator

import pytest
import tqdm as upstream

import jobprogress as jp
from jobprogress.contrib.tqdm import tqdm
from jobprogress.errors import InvalidProgressError, MissingExtraError
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


def test_invalid_unit_raises_before_the_bar_is_drawn(progress_capture: ProgressCapture) -> None:
    out = io.StringIO()
    with pytest.raises(InvalidProgressError, match="files") as raised:
        tqdm(range(3), job="bad-unit", unit="it", file=out)

    assert "'it'" in str(raised.value)
    assert out.getvalue() == ""
    assert progress_capture.messages == []


@pytest.mark.parametrize("job", ["", None, 42])
def test_job_must_be_a_non_empty_string(job: object, progress_capture: ProgressCapture) -> None:
    with pytest.raises(InvalidProgressError):
        tqdm(range(3), job=job, file=io.StringIO())  # type: ignore[arg-type]


def test_job_is_required() -> None:
    with pytest.raises(TypeError, match="job"):
        tqdm(range(3))  # type: ignore[call-arg]


def test_missing_tqdm_is_a_missing_extra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # what an uninstalled package looks like to import
    monkeypatch.delitem(sys.modules, "jobprogress.contrib.tqdm")

    with pytest.raises(MissingExtraError, match=r"jobprogress\[tqdm\]"):
        importlib.import_module("jobprogress.contrib.tqdm")


def test_a_disabled_bar_closed_without_iterating_still_reports_its_job(
    progress_capture: ProgressCapture,
) -> None:
    bar = tqdm(range(5), job="closed-unused", disable=True)
    bar.close()
    assert progress_capture.statuses("closed-unused") == ["running", "succeeded"]
