"""update_context (a chassis context updated in place for a few changed ports) must give exactly
what build_context gives from scratch, whatever the changes: random switch ports coming, going,
renumbered and flapping; topology ports created, deleted, rebound, renamed (binding:profile);
interface-name collisions; and it must refuse (None) what only a full build gets right."""
from __future__ import annotations

import random

import pytest

from controller.registry import SwitchPort, build_context, port_ifnames, update_context

CHASSIS = {"name": "c1", "bridge_mappings": {"physnet1": "br-phy-patch"}, "tunnel_ip": "192.0.2.1"}


class World:
    """A chassis' switch ports and the topology's port records, with build_context's inputs."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.records: dict[str, dict] = {}
        self.ports: dict[str, SwitchPort] = {"tf-vxlan": SwitchPort("tf-vxlan", 1, True),
                                             "br-phy-patch": SwitchPort("br-phy-patch", 2, True)}
        self.next_ofport = 10

    def find_port(self, name: str) -> list[str]:
        return [pid for pid, r in self.records.items() if name in port_ifnames(r)]

    def bound_here(self) -> list[dict]:
        return [r for r in self.records.values() if r.get("binding:host_id") == "c1"]

    def full(self) -> tuple:
        plugged: dict[str, str] = {}
        ctx, up = build_context("c1", 1, CHASSIS, self.ports, self.find_port, self.bound_here(), plugged)
        return ctx, up, plugged

    def new_id(self) -> str:
        return f"{self.rng.randrange(16 ** 8):08x}-0000-4000-8000-000000000000"

    def step(self) -> tuple[set[str], set[str]]:
        """One random change; returns (names, port ids) as controller.core's _ContextWork would."""
        rng, names, pids = self.rng, set(), set()
        what = rng.choice(["create", "create", "delete", "rebind", "profile", "plug", "plug", "unplug",
                           "flap", "renumber", "collide"])
        ids = list(self.records)
        if what == "create" or not ids:
            pid = self.new_id()
            self.records[pid] = {"id": pid, "device_owner": rng.choice(["compute:nova", "", "network:dhcp"]),
                                 "binding:host_id": rng.choice(["c1", "c1", "c2", ""])}
            names |= set(port_ifnames(self.records[pid]))
            pids.add(pid)
        elif what == "delete":
            pid = rng.choice(ids)
            names |= set(port_ifnames(self.records.pop(pid)))
            pids.add(pid)
        elif what in ("rebind", "profile", "collide"):
            pid = rng.choice(ids)
            old = dict(self.records[pid])
            new = dict(old)
            if what == "rebind":
                new["binding:host_id"] = rng.choice(["c1", "c2", ""])
            elif what == "profile":
                new["binding:profile"] = {"interface_name": f"vif{rng.randrange(6)}"} if rng.random() < 0.7 else {}
            else:  # name another port's tap: both match it, build_context binds neither
                other = rng.choice(ids)
                new["binding:profile"] = {"interface_name": "tap" + other[:11]}
            self.records[pid] = new
            names |= set(port_ifnames(old)) | set(port_ifnames(new))
            pids.add(pid)
        else:
            candidates = [f"vif{i}" for i in range(6)] + ["tap" + p[:11] for p in ids]
            name = rng.choice(candidates)
            if what == "plug":
                self.next_ofport += 1
                self.ports[name] = SwitchPort(name, self.next_ofport, rng.random() < 0.8)
            elif what == "unplug":
                self.ports.pop(name, None)
            elif what == "flap" and name in self.ports:
                sp = self.ports[name]
                self.ports[name] = SwitchPort(name, sp.ofport, not sp.up)
            elif what == "renumber" and name in self.ports:
                self.next_ofport += 1
                self.ports[name] = SwitchPort(name, self.next_ofport, self.ports[name].up)
            names.add(name)
        return names, pids


@pytest.mark.parametrize("seed", range(12))
def test_update_in_place_equals_build_from_scratch(seed):
    w = World(random.Random(seed))
    ctx, up, plugged = w.full()
    refused = 0
    for _ in range(400):
        # one to three changes per batch, as a batch of events would carry them
        names: set[str] = set()
        pids: set[str] = set()
        for _ in range(w.rng.randint(1, 3)):
            n, p = w.step()
            names |= n
            pids |= p
        got = update_context(ctx, up, plugged, CHASSIS, w.ports, names, pids, w.find_port, w.records.get)
        want_ctx, want_up, want_plugged = w.full()
        if got is None:  # the caller then builds from scratch
            refused += 1
            ctx, up, plugged = want_ctx, want_up, want_plugged
            continue
        ctx, up, plugged, touched = got
        assert ctx == want_ctx
        assert up == want_up
        assert plugged == want_plugged
        assert pids <= touched
    assert 400 - refused >= 100, f"only {400 - refused} batches of 400 went through the in-place update"


def test_refuses_what_only_a_full_build_gets_right():
    w = World(random.Random(1))
    ctx, up, plugged = w.full()
    w.ports["tf-vxlan"] = SwitchPort("tf-vxlan", 7, True)  # a tunnel port renumbered
    assert update_context(ctx, up, plugged, CHASSIS, w.ports, {"tf-vxlan"}, set(), w.find_port,
                          w.records.get) is None
    pid = "p1"
    w.records[pid] = {"id": pid, "binding:profile": {"interface_name": "vif1"}}
    w.ports["vif1"] = SwitchPort("vif1", 20, True)
    w.ports["tap" + pid[:11]] = SwitchPort("tap" + pid[:11], 21, True)
    ctx, up, plugged = w.full()
    # two switch ports carry one topology port: build_context's last one wins, not ours to guess
    assert update_context(ctx, up, plugged, CHASSIS, w.ports, {"vif1"}, set(), w.find_port,
                          w.records.get) is None
