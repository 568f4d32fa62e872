"""Suite-wide pytest hooks: remember each phase's report on the test item.

Why: fixtures that own external processes (the test bed) print their diagnostics (controller
log tail, flow tables) only when the test failed, which they learn from `item.rep_call`.
"""
from __future__ import annotations

from typing import Any, Generator

import pytest


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)

