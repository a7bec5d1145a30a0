"""The twin of ``tqdm.asyncio``: ``tqdm_asyncio`` (alias ``tqdm``) and ``tarange`` (alias ``trange``).

``async for`` over a bar, ``tqdm_asyncio.as_completed()`` and ``tqdm_asyncio.gather()`` work as in tqdm,
and each bar is tracked as in :mod:`jobprogress.contrib.tqdm`.
"""

from __future__ import annotations

from typing import Any

from ...errors import MissingExtraError
from . import _with_added_doc
from . import tqdm as _bridge_tqdm

try:
    import tqdm.asyncio as _asyncio
except ImportError as exc:  # pragma: no cover - tqdm.asyncio ships with every tqdm the extra allows
    raise MissingExtraError("jobprogress.contrib.tqdm.asyncio", "tqdm", "tqdm") from exc

__all__ = ["tarange", "tqdm", "tqdm_asyncio", "trange"]


class tqdm_asyncio(_bridge_tqdm, _asyncio.tqdm_asyncio):  # type: ignore[misc]
    __doc__ = _with_added_doc(_asyncio.tqdm_asyncio.__doc__)

    def __aiter__(self) -> tqdm_asyncio:
        tracker = self._jp_tracker
        if tracker is not None and tracker.status == "pending":
            tracker.start()  # a disabled bar's job starts with its loop; update() then counts it
        return self


def tarange(*args: Any, **kwargs: Any) -> tqdm_asyncio:
    """Shortcut for ``tqdm_asyncio(range(*args), **kwargs)``, as tqdm's ``tarange``."""
    return tqdm_asyncio(range(*args), **kwargs)


tqdm = tqdm_asyncio
trange = tarange
