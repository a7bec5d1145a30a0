"""The factory, ``create_app``: the settings it refuses."""

from __future__ import annotations

import pytest

from _http_support import TOKEN
from _server_support import MemoryWriter, StaticReader
from jobprogress.errors import ConfigurationError
from jobprogress.server import create_app

# -- configuration ---------------------------------------------------------------------------------


def test_create_app_refuses_bad_settings() -> None:
    writer, reader = MemoryWriter(), StaticReader()
    with pytest.raises(ConfigurationError, match="token"):
        create_app(token="  ", writer=writer, reader=reader)
    with pytest.raises(ConfigurationError, match="max_body"):
        create_app(token=TOKEN, writer=writer, reader=reader, max_body=0)
    with pytest.raises(ConfigurationError, match="stall_after"):
        create_app(token=TOKEN, writer=writer, reader=reader, stall_after=float("nan"))
    with pytest.raises(ConfigurationError, match="database URL"):
        create_app(token=TOKEN)
