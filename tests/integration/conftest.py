"""Integration tests: real OVS, network namespaces, real packets (see tests/testbed).

Guards (why): these tests create namespaces, veths and OVS daemons, so they need root and the
OVS binaries (else: skipped with the reason), and they must not run in the host's network
namespace, where a mistake could touch real interfaces (else: they fail with the command to use).
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.testbed import Bed, missing_binaries, netns
from tests.testbed.bed import WORKROOT
from tests.testbed.cleanup import clean_bed

log = logging.getLogger(__name__)
HERE = Path(__file__).parent

NETNS_HINT = ("integration tests must run inside a dedicated network namespace: "
              "scripts/netns-run tf-test -- .venv/bin/python -m pytest tests/integration "
              "(or `make test`); set TF_ALLOW_HOST_NETNS=1 to override")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root (network namespaces, OVS)"
    missing = missing_binaries()
    if missing:
        return f"Open vSwitch binaries missing: {', '.join(missing)} (run `make setup`)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _dedicated_netns() -> None:
    """Fail (not skip) in the host netns: silently not running the tests would hide it."""
    if netns.in_host_netns() and os.environ.get("TF_ALLOW_HOST_NETNS") != "1":
        pytest.fail(NETNS_HINT, pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _clean_stale_beds(_dedicated_netns: None) -> None:
    """Remove beds left by killed runs (only those whose owning process is gone)."""
    if WORKROOT.exists():
        for workdir in WORKROOT.iterdir():
            if workdir.is_dir():
                clean_bed(workdir, force=False, dry=False)


def _report(request: pytest.FixtureRequest, bed: Bed) -> bool:
    failed = any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
                 for w in ("setup", "call"))
    if failed:
        sys.stderr.write(f"\n===== test bed {bed.prefix} diagnostics (files in {bed.workdir})\n")
        sys.stderr.write(bed.diagnostics() + "\n")
    return failed


@pytest.fixture
def bed(request: pytest.FixtureRequest) -> Iterator[Bed]:
    """A fresh test bed per test; torn down afterwards, diagnostics printed if the test failed
    (files kept in /tmp/tfbed/<prefix>/ then; remove with scripts/cleanup-testbeds)."""
    b = Bed(label=request.node.nodeid)
    try:
        yield b
    finally:
        failed = _report(request, b)
        b.close(keep_workdir=failed)


@pytest.fixture(scope="module")
def module_bed(request: pytest.FixtureRequest) -> Iterator[Bed]:
    """One bed shared by a module's tests (cheaper; tests must not depend on each other's
    leftovers)."""
    b = Bed(label=request.node.nodeid)
    try:
        yield b
    finally:
        b.close()
