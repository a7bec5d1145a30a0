"""The twin of ``tqdm.auto``: the notebook bar in Jupyter, else the asyncio-capable console bar; tracked.

``from jobprogress.contrib.tqdm.auto import tqdm, trange`` replaces ``from tqdm.auto import tqdm, trange``.
"""

from __future__ import annotations

from typing import Any

from ...errors import MissingExtraError
from . import _with_added_doc
from .asyncio import tqdm_asyncio

try:
    import tqdm.auto as _auto
except ImportError as exc:  # pragma: no cover - tqdm.auto ships with every tqdm the extra allows
    raise MissingExtraError("jobprogress.contrib.tqdm.auto", "tqdm", "tqdm") from exc

__all__ = ["tqdm", "trange"]

if _auto.tqdm is _auto.asyncio_tqdm:  # a console: tqdm.auto's bar is tqdm.asyncio's
    tqdm = tqdm_asyncio
else:  # pragma: no cover - Jupyter

    class tqdm(tqdm_asyncio, _auto.tqdm):  # type: ignore[no-redef,misc]
        __doc__ = _with_added_doc(_auto.tqdm.__doc__)


def trange(*args: Any, **kwargs: Any) -> tqdm:
    """Shortcut for ``tqdm(range(*args), **kwargs)``, as ``tqdm.auto.trange``."""
    return tqdm(range(*args), **kwargs)
