"""Third-party plugins are discovered through an installed ``jobprogress`` entry point.

A real installation is a ``*.dist-info`` directory with an ``entry_points.txt`` on ``sys.path``;
``importlib.metadata`` (and so pluggy) finds it exactly as it finds one that pip wrote. Building it by
hand keeps the test fast, with no pip and no network.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from jobprogress import _plugins
from jobprogress.errors import UnknownSchemeError

PLUGIN_MODULE = "jobprogress_probe_plugin"
DISTRIBUTION = "jobprogress-probe"

PLUGIN_SOURCE = textwrap.dedent(
    '''
    """A third-party style plugin registering probe://."""

    from jobprogress.hookspecs import hookimpl


    class ProbeSink:
        instances = []

        def __init__(self, url):
            self.url = url
            self.messages = []
            self.closed = False
            ProbeSink.instances.append(self)

        def send(self, messages):
            self.messages.extend(messages)

        def flush(self, timeout):
            return True

        def close(self, timeout):
            self.closed = True


    @hookimpl
    def jobprogress_register_sinks(register):
        register("probe", ProbeSink)
    '''
)


def install_probe(site: Path) -> None:
    """Lay out what ``pip install jobprogress-probe`` would: the module and its dist-info."""
    (site / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)
    dist_info = site / "jobprogress_probe-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[jobprogress]\nprobe = {PLUGIN_MODULE}\n")


@pytest.fixture
def probe_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    install_probe(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("JOBPROGRESS_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("JOBPROGRESS_DISABLED_PLUGINS", raising=False)
    _plugins.reset()
    yield
    # Runs before monkeypatch restores sys.path and the environment; the next use rebuilds the manager
    # from the restored state.
    _plugins.reset()
    sys.modules.pop(PLUGIN_MODULE, None)


def probe_module() -> ModuleType:
    return sys.modules[PLUGIN_MODULE]


@pytest.mark.usefixtures("probe_installed")
def test_installed_entry_point_registers_its_scheme() -> None:
    sink = _plugins.create_sink("probe://x")

    assert type(sink) is probe_module().ProbeSink
    assert sink.url == "probe://x"
    assert "probe" in _plugins.sink_factories()
    manager = _plugins.plugin_manager()
    assert manager.get_plugin("probe") is probe_module()
    assert DISTRIBUTION in {dist.project_name for _, dist in manager.list_plugin_distinfo()}


@pytest.mark.usefixtures("probe_installed")
def test_built_in_sinks_load_beside_the_plugin() -> None:
    schemes = set(_plugins.sink_factories())

    assert {"probe", "stdout", "stderr", "memory"} <= schemes


@pytest.mark.usefixtures("probe_installed")
def test_load_plugins_empty_loads_no_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBPROGRESS_LOAD_PLUGINS", "")
    _plugins.reset()

    with pytest.raises(UnknownSchemeError) as raised:
        _plugins.create_sink("probe://x")
    assert raised.value.scheme == "probe"
    assert "stdout" in raised.value.known  # built-ins are not entry points: they stay
    assert PLUGIN_MODULE not in sys.modules


@pytest.mark.usefixtures("probe_installed")
@pytest.mark.parametrize(("wanted", "loaded"), [("probe", True), (" probe , other ", True), ("other", False)])
def test_load_plugins_names_the_entry_points_to_load(
    wanted: str, loaded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPROGRESS_LOAD_PLUGINS", wanted)
    _plugins.reset()

    assert ("probe" in _plugins.sink_factories()) is loaded


@pytest.mark.usefixtures("probe_installed")
@pytest.mark.parametrize("load", [None, "probe"])
def test_disabled_plugins_turns_it_off(load: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBPROGRESS_DISABLED_PLUGINS", "probe")
    if load is not None:
        monkeypatch.setenv("JOBPROGRESS_LOAD_PLUGINS", load)  # disabling wins over naming it
    _plugins.reset()

    with pytest.raises(UnknownSchemeError):
        _plugins.create_sink("probe://x")
    assert PLUGIN_MODULE not in sys.modules


@pytest.mark.usefixtures("probe_installed")
def test_toggles_are_read_when_the_manager_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "probe" in _plugins.sink_factories()
    monkeypatch.setenv("JOBPROGRESS_DISABLED_PLUGINS", "probe")
    assert "probe" in _plugins.sink_factories()  # loading is once per process...

    _plugins.reset()  # ...until reset

    assert "probe" not in _plugins.sink_factories()


def test_without_the_distribution_the_scheme_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBPROGRESS_LOAD_PLUGINS", raising=False)
    _plugins.reset()
    try:
        with pytest.raises(UnknownSchemeError, match="known schemes"):
            _plugins.create_sink("probe://x")
    finally:
        _plugins.reset()


@pytest.mark.usefixtures("probe_installed")
def test_configured_plugin_sink_receives_the_jobs_messages() -> None:
    import jobprogress as jp

    jp.configure(sinks=["probe://e2e"], worker_id="probe-worker")
    try:
        with jp.track("probe-job", unit="files", total=2) as tracker:
            tracker.advance(2)
        assert jp.flush(timeout=5.0)
        (sink,) = [s for s in probe_module().ProbeSink.instances if s.url == "probe://e2e"]
        final = [m for m in sink.messages if m.type == "heartbeat"][-1]
    finally:
        jp.configure(sinks=[])
        jp.shutdown(timeout=5.0)

    assert (final.job_id, final.worker_id, final.status.value) == ("probe-job", "probe-worker", "succeeded")
    assert sink.closed
