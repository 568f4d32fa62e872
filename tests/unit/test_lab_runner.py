"""The labs' check runner (labs/common.py): a check can fail, and any failure fails the lab.

Why: a lab's --check is only worth something if a wrong expectation makes it exit non-zero;
an expected failure (a cross-tenant ping that must not arrive) passes only when it fails.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "labs"))
import common  # noqa: E402
from common import Checker, LabError, run_checks  # noqa: E402


def _run(scenario) -> tuple[int, str]:
    out = io.StringIO()
    checker = Checker(out)
    rc = run_checks(lambda: scenario(checker), checker)
    return rc, out.getvalue()


def test_all_expectations_met_exits_zero() -> None:
    def scenario(c: Checker) -> None:
        c.reach("ping a1 -> a2 (same tenant)", got=True, expect=True)
        c.reach("ping a1 -> b1 (other tenant)", got=False, expect=False)   # the ping failed: PASS
        c.equal("a1's address", "10.0.0.11/24", "10.0.0.11/24")
    rc, out = _run(scenario)
    assert rc == 0
    assert out.count("PASS") == 4 and "FAIL" not in out   # 3 checks + the summary line
    assert "PASS  ping a1 -> b1 (other tenant): blocked" in out


def test_cross_tenant_ping_that_arrives_fails_the_lab() -> None:
    rc, out = _run(lambda c: c.reach("ping a1 -> b1 (other tenant)", got=True, expect=False))
    assert rc == 1
    assert "FAIL  ping a1 -> b1 (other tenant): passes  (expected blocked)" in out


def test_deliberately_wrong_expectation_exits_non_zero() -> None:
    def scenario(c: Checker) -> None:
        c.reach("ping a1 -> a2", got=True, expect=True)
        c.equal("a1's gateway", "10.0.0.1", "10.0.0.254")   # wrong on purpose
        c.reach("ping a1 -> b1", got=False, expect=False)
    rc, out = _run(scenario)
    assert rc == 1
    assert "FAIL  a1's gateway  (got '10.0.0.1', wanted '10.0.0.254')" in out
    assert "1 of 3 checks FAILED" in out


def test_a_step_that_raises_is_a_failure_and_earlier_checks_stay() -> None:
    def scenario(c: Checker) -> None:
        c.check("first", True)
        raise LabError("nc did not listen")
    rc, out = _run(scenario)
    assert rc == 1
    assert "PASS  first" in out and "FAIL  scenario ran to the end  (LabError: nc did not listen)" in out


def test_no_checks_is_not_a_pass() -> None:
    rc, out = _run(lambda c: None)
    assert rc == 1 and "no checks ran" in out


def test_attempt_is_bounded_and_stops_at_first_success() -> None:
    calls: list[int] = []
    assert not common.attempt(lambda: calls.append(1) is not None, tries=3, pause=0)
    assert len(calls) == 3
    calls.clear()
    assert common.attempt(lambda: bool(calls.append(1)) or len(calls) == 2, tries=5, pause=0)
    assert len(calls) == 2


def test_flows_by_owner_reads_the_cookie_kind() -> None:
    dump = """OFPST_FLOW reply (OF1.3) (xid=0x2):
 cookie=0x100000000000000, table=0, priority=0 actions=drop
 cookie=0x300000000000003, table=0, priority=100,in_port=1 actions=goto_table:10
 cookie=0x300000000000004, table=0, priority=100,in_port=2 actions=goto_table:10
 cookie=0x200000000000001, table=40, priority=50,metadata=0x1 actions=drop
"""
    assert common.flows_by_owner(dump) == {"pipeline": 1, "port": 2, "network": 1}
