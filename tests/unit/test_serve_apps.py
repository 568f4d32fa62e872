"""`tenantflow serve` refuses to start when a configured app spec cannot be loaded: serving
without that app would converge every switch to a pipeline lacking its flows."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.serve import AppLoadError, _load_apps

ROOT = Path(__file__).resolve().parents[2]
HERE = __name__  # "tests.unit.test_serve_apps": the factories below are importable specs


class FakeApp:
    def __init__(self, name: str) -> None:
        self.name = name


def two_apps() -> list:
    return [FakeApp("one"), FakeApp("two")]


def broken_factory() -> list:
    raise RuntimeError("factory exploded")


not_callable = 42


def test_good_specs_load_in_order() -> None:
    apps = _load_apps([f"{HERE}:two_apps", f"{HERE}:two_apps"])
    assert [a.name for a in apps] == ["one", "two", "one", "two"]


def test_default_registry_loads() -> None:
    from apps.registry import APPS
    apps = _load_apps(["apps.registry:default_apps"])
    assert [type(a).__name__ for a in apps] == [spec.partition(":")[2] for spec in APPS]
    # No attribute: the module's default_apps.
    assert [type(a) for a in _load_apps(["apps.registry"])] == [type(a) for a in apps]


def test_no_specs_no_apps() -> None:
    assert _load_apps([]) == []


@pytest.mark.parametrize("spec, cause", [
    ("tenantflow_no_such_module:default_apps", "ModuleNotFoundError"),
    (f"{HERE}:no_such_factory", "AttributeError"),
    (f"{HERE}:broken_factory", "RuntimeError: factory exploded"),
    (f"{HERE}:not_callable", "TypeError"),
    (":default_apps", "ValueError"),
])
def test_bad_spec_raises(spec: str, cause: str) -> None:
    with pytest.raises(AppLoadError) as info:
        _load_apps([f"{HERE}:two_apps", spec])
    message = str(info.value)
    assert repr(spec) in message
    assert cause in message
    assert info.value.__cause__ is not None


def test_serve_exits_nonzero_on_bad_app_before_opening_store(tmp_path: Path) -> None:
    """`tenantflow serve` as a whole: one clear line on stderr, no traceback, exit 2, and the store (which
    comes after the apps) is never opened."""
    db = tmp_path / "never.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OSKEN_HUB_TYPE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "topology.cli.main", "serve", "--store", f"sqlite:///{db}",
         "--api-listen", "127.0.0.1:0", "--ofp-listen", "127.0.0.1:0",
         "--apps", f"{HERE}:two_apps,tenantflow_no_such_module:default_apps"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "tenantflow serve: cannot load apps from 'tenantflow_no_such_module:default_apps'" in proc.stderr
    assert "ModuleNotFoundError" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not db.exists()
