"""`tenantflow status` rendering and its --check verdict, from a stats document."""
from __future__ import annotations

from controller import status

STATS = {"revision": 40, "store_revision": 42, "batches": 7, "check_failures": 0,
         "datapaths": {"00000000000000a1": {"chassis": "c1", "connected": True, "desired_flows": 120,
                                            "installed_flows": 120, "healthy": True, "problems": []},
                       "00000000000000a2": {"chassis": "c2", "connected": True, "desired_flows": 90,
                                            "installed_flows": 88, "healthy": False,
                                            "problems": ["2 flows rejected by the switch"]}}}


def test_table_names_every_switch_and_its_problem():
    text = status.render(STATS)
    assert "feed lag 2" in text
    c1, c2 = (next(ln for ln in text.splitlines() if ln.startswith(n)) for n in ("c1 ", "c2 "))
    assert "120" in c1 and "yes" in c1 and "-" in c1
    assert "NO" in c2 and "2 flows rejected by the switch" in c2


def test_check_fails_on_an_unhealthy_or_disconnected_switch(monkeypatch, capsys):
    class Resp:
        status_code = 200

        def __init__(self, body):
            self.body = body

        def json(self):
            return self.body

    import requests
    monkeypatch.setattr(requests, "get", lambda *a, **k: Resp(STATS))
    assert status.main(["--check"]) == 3
    assert status.main([]) == 0
    healthy = {**STATS, "datapaths": {k: v for k, v in STATS["datapaths"].items() if v["healthy"]}}
    monkeypatch.setattr(requests, "get", lambda *a, **k: Resp(healthy))
    assert status.main(["--check", "-f", "json"]) == 0
    assert '"feed_lag": 2' in capsys.readouterr().out


def test_several_controllers_show_who_owns_what():
    stats = {**STATS, "ha": {"mode": "etcd", "member_id": "ctl-a", "members": ["ctl-a", "ctl-b"],
                             "owners": {"00000000000000a1": {"owner": "ctl-a", "generation": 7, "mine": True},
                                        "00000000000000a2": {"owner": "ctl-b", "generation": 9, "mine": False}}}}
    stats["datapaths"] = {k: dict(v, master=(k == "00000000000000a1")) for k, v in STATS["datapaths"].items()}
    text = status.render(stats)
    assert "controller ctl-a (this one): owns c1" in text and "controller ctl-b: owns c2" in text
    [c2] = [r for r in status.rows(stats) if r["chassis"] == "c2"]
    assert c2["role"] == "slave" and c2["owner"] == "ctl-b" and c2["healthy"]   # a slave's resync is not a fault
