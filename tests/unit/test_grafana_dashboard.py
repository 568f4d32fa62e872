"""The shipped Grafana dashboard only queries metrics the controller exports."""
from __future__ import annotations

import json
import re
from pathlib import Path

from controller import metrics


class FakeCore:
    packet_apps: dict = {}

    def stats(self) -> dict:
        return {"datapaths": {"00000000000000a1": {"chassis": "c1", "connected": True}}, "revision": 1}


class FakeStore:
    def revision(self) -> int:
        return 1


class FakeDispatcher:
    handled = errors = dropped = unknown = 0


def exported_names() -> set[str]:
    """Every family the controller exports: the event-time ones and what the collector yields."""
    names = {m.name for m in metrics.REGISTRY.collect()}
    names |= {m.name for m in metrics.CoreCollector(FakeCore(), FakeDispatcher(), FakeStore()).collect()}
    return names


def test_every_panel_queries_an_exported_metric():
    dash = json.loads((Path(__file__).parents[2] / "docs/grafana/tenantflow.json").read_text())
    known = exported_names()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"tenantflow_[a-z_]+", target["expr"]):
                base = re.sub(r"_(total|bucket|count|sum)$", "", name)
                assert base in known, f"{panel['title']}: {name} is not exported"
