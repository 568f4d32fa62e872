"""Base pipeline app: the chassis-wide table misses (Owner.PIPELINE, key 0)."""
from __future__ import annotations

from typing import Iterable

from flows.base import PIPELINE_COOKIE, base_flows
from flows.flow import Flow


class PipelineApp:
    """Every chassis gets the same base flows; no topology change ever alters them."""
    name = "pipeline"

    def owners_for_change(self, view, change) -> Iterable[int]:
        return ()

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        return (PIPELINE_COOKIE,)

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        return base_flows() if owner == PIPELINE_COOKIE else ()
