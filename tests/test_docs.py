"""The docs agree with the code: hook and sink signatures, and every ``JOBPROGRESS_*`` variable."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest

from jobprogress import hookspecs
from jobprogress.config import ENV_PREFIX, Settings
from jobprogress.sinks import AsyncSink, ResumableSink, Sink

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "jobprogress"

# Variables that are not Settings fields; each must have its own section in docs/configuration.md.
OTHER_VARIABLES = (
    "JOBPROGRESS_LOAD_PLUGINS",
    "JOBPROGRESS_DISABLED_PLUGINS",
    "JOBPROGRESS_HTTP_TOKEN",
    "JOBPROGRESS_DB",
    "JOBPROGRESS_TEST_POSTGRES_URL",
    "JOBPROGRESS_TEST_BACKENDS",
)

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
_DEF = re.compile(r"^(?:async )?def (\w+)\(.*\)")
_SECTION = re.compile(r"^#+ `(JOBPROGRESS_[A-Z0-9_]+)`\s*$", re.MULTILINE)
_VARIABLE = re.compile(r"\bJOBPROGRESS_[A-Z0-9_]*[A-Z0-9]\b")


class _Annotation(str):
    """An annotation kept as the source text (the modules use ``from __future__ import annotations``)."""

    def __repr__(self) -> str:
        return str(self)


def signature_line(function: Callable[..., Any]) -> str:
    """``def name(params) -> return`` exactly as the source spells it, without ``: ...``."""
    signature = inspect.signature(function)

    def text(annotation: Any) -> Any:
        return _Annotation(annotation) if isinstance(annotation, str) else annotation

    signature = signature.replace(
        parameters=[p.replace(annotation=text(p.annotation)) for p in signature.parameters.values()],
        return_annotation=text(signature.return_annotation),
    )
    prefix = "async def" if inspect.iscoroutinefunction(function) else "def"
    return f"{prefix} {function.__name__}{signature}"


def documented_signatures(path: Path) -> list[str]:
    """Every ``def ...`` line inside the fenced code blocks of ``path``, without a trailing ``: ...``."""
    lines = []
    for block in _FENCE.findall(path.read_text(encoding="utf-8")):
        for line in block.splitlines():
            stripped = line.strip()
            if _DEF.match(stripped):
                lines.append(re.sub(r":\s*(\.\.\.)?\s*$", "", stripped))
    return lines


def hooks() -> dict[str, Callable[..., Any]]:
    return {
        name: function
        for name, function in vars(hookspecs).items()
        if name.startswith("jobprogress_") and callable(function)
    }


def test_there_are_hooks_to_check() -> None:
    assert "jobprogress_register_sinks" in hooks()


def test_signature_line_renders_source_annotations() -> None:
    assert signature_line(hookspecs.jobprogress_register_sinks) == (
        "def jobprogress_register_sinks(register: RegisterSink) -> None"
    )


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_is_documented_with_its_exact_signature(name: str) -> None:
    documented = [line for line in documented_signatures(DOCS / "plugins.md") if _DEF.match(line)[1] == name]

    assert documented, f"docs/plugins.md has no fenced signature line for the hook {name}"
    # Examples implementing the hook count too: each must match the specification.
    assert set(documented) == {signature_line(hooks()[name])}, (
        f"docs/plugins.md documents {name} as {documented}, but hookspecs.py defines "
        f"{signature_line(hooks()[name])!r}"
    )


def test_no_documented_hook_is_missing_from_hookspecs() -> None:
    documented = {
        _DEF.match(line)[1]
        for line in documented_signatures(DOCS / "plugins.md")
        if _DEF.match(line)[1].startswith("jobprogress_")
    }

    assert documented <= set(hooks()), (
        f"documented hooks that hookspecs.py lacks: {documented - set(hooks())}"
    )


@pytest.mark.parametrize(
    "method",
    [
        hookspecs.RegisterSink.__call__,
        Sink.send,
        Sink.flush,
        Sink.close,
        AsyncSink.asend,
        AsyncSink.aflush,
        AsyncSink.aclose,
        ResumableSink.stored_done,
    ],
    ids=lambda method: method.__qualname__,
)
def test_register_callback_and_sink_contract_are_documented_exactly(method: Callable[..., Any]) -> None:
    assert signature_line(method) in documented_signatures(DOCS / "plugins.md")


def configuration_sections() -> dict[str, str]:
    """Section text of docs/configuration.md by the variable in its heading."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    headings = list(_SECTION.finditer(text))
    sections = {}
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
        assert heading[1] not in sections, f"{heading[1]} has two sections"
        sections[heading[1]] = text[heading.end() : end]
    return sections


@pytest.mark.parametrize("field", [f.name for f in fields(Settings)])
def test_every_setting_has_its_variable_documented(field: str) -> None:
    variable = ENV_PREFIX + field.upper()
    sections = configuration_sections()

    assert variable in sections, f"docs/configuration.md has no '### `{variable}`' section"
    default = next(f.default for f in fields(Settings) if f.name == field)
    if default is not MISSING and isinstance(default, (int, float, str)) and not isinstance(default, bool):
        assert f"Default: `{default}`" in sections[variable], (
            f"{variable}: the documented default is not {default}"
        )


@pytest.mark.parametrize("variable", OTHER_VARIABLES)
def test_other_variables_are_documented(variable: str) -> None:
    assert variable in configuration_sections()


def test_every_variable_the_source_or_tox_reads_is_documented() -> None:
    used = set()
    for path in [*SRC.rglob("*.py"), ROOT / "tox.ini"]:
        if path.exists():
            used.update(_VARIABLE.findall(path.read_text(encoding="utf-8")))

    undocumented = used - set(configuration_sections())
    assert not undocumented, (
        f"variables in src/ or tox.ini without a section in docs/configuration.md: {undocumented}"
    )


def test_no_documented_variable_is_stale() -> None:
    known = {ENV_PREFIX + f.name.upper() for f in fields(Settings)} | set(OTHER_VARIABLES)

    assert set(configuration_sections()) <= known


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_resolve(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (DOCS / target).exists(), f"docs/{page} links to {target}, which does not exist"


def test_docs_pages_exist() -> None:
    assert {p.name for p in DOCS.glob("*.md")} >= {
        "index.md",
        "user-guide.md",
        "plugins.md",
        "configuration.md",
        "architecture.md",
    }
