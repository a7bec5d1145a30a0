"""``@track(...)`` on a function: each call runs in a fresh tracker whose job id comes from the call.

Sync and async functions, generators and async generators; the job id from a template over the bound
arguments (``"scan-{source_id}"``), a callable taking the same arguments, a plain string, or None (the
function's qualified name), decided once at decoration.
"""

from __future__ import annotations

import functools
import inspect
import string
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from . import _validate as v
from .errors import InvalidProgressError

if TYPE_CHECKING:
    from ._tracker import JobSpec, Tracker

__all__ = ["decorate"]

F = TypeVar("F", bound=Callable[..., Any])


def decorate(func: F, spec: JobSpec, make: Callable[[str], Tracker]) -> F:
    """Wrap ``func`` so each call runs inside ``make(job_id)`` (a fresh tracker)."""
    job_for = _job_resolver(spec, func)
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            async with make(job_for(args, kwargs)):
                return await func(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async with make(job_for(args, kwargs)):
                async for item in func(*args, **kwargs):
                    yield item

        return agen_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            with make(job_for(args, kwargs)):
                return (yield from func(*args, **kwargs))

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with make(job_for(args, kwargs)):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _job_resolver(
    spec: JobSpec, func: Callable[..., Any]
) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
    """Decide once, at decoration, how each call's job id is made."""
    if spec is None:
        name = f"{func.__module__}.{func.__qualname__}"
        return lambda args, kwargs: name
    if callable(spec):
        make = spec

        def from_callable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            return v.check_id("job id", make(*args, **kwargs))

        return from_callable
    fields = [field for _, field, _, _ in string.Formatter().parse(spec) if field is not None]
    if not fields:
        return lambda args, kwargs: spec
    signature = inspect.signature(func)
    names = set(signature.parameters)
    for field in fields:
        root = field.split(".", 1)[0].split("[", 1)[0]
        if root not in names:
            raise InvalidProgressError(
                f"job template {spec!r} uses {{{field}}}, which is not a parameter of {func.__qualname__}; "
                f"parameters: {', '.join(names) or '(none)'}"
            )

    def from_template(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return v.check_id("job id", spec.format_map(bound.arguments))

    return from_template
