"""The pytest plugin (entry point ``pytest11``): the ``progress_capture`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import ProgressCapture, capture_progress


@pytest.fixture
def progress_capture() -> Iterator[ProgressCapture]:
    """Every message jobprogress delivers during the test, synchronously (see ``capture_progress``)."""
    with capture_progress() as capture:
        yield capture
