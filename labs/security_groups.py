#!/usr/bin/python3
"""Lab: security groups — web- and ssh-like services behind groups, rules changed live.

Tenant alice, one network 10.0.0.0/24 on one switch s1. nc listens on tcp/80 ("web") and
tcp/22 ("ssh") in web1 and web2, on tcp/5432 ("db") in db. Groups: `web` (web1, web2),
`db` (db), and client in `default` only. Rules are added and removed while the services run,
and each effect is checked: tcp/80 opened from anywhere, tcp/22 opened for one VM only
(an extra group on web1's port), the database reachable only from members of `web`
(a remote group, following membership changes), a rule removed closes the port again and
cuts the live connection.

    sudo labs/security_groups.py [--check] [--api URL --controller HOST:PORT]
"""
from __future__ import annotations

import sys
from functools import partial
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Checker, Lab, LabRun  # noqa: E402

T = "alice"
# vm -> (IP, groups, listening ports)
VMS = {"client": ("10.0.0.10", ["default"], []),
       "web1": ("10.0.0.11", ["web"], [80, 22]),
       "web2": ("10.0.0.12", ["web"], [80, 22]),
       "db": ("10.0.0.20", ["db"], [5432])}


class SecurityGroups(Lab):
    name = "security_groups"
    about = __doc__.splitlines()[0]

    def __init__(self) -> None:
        self.ports: dict[str, dict[str, Any]] = {}

    def build(self, run: LabRun) -> None:
        tf = run.tf
        net = tf(T, "network", "create", "sg-net")
        tf(T, "subnet", "create", "--network", "sg-net", "--subnet-range", "10.0.0.0/24", "sg-subnet")
        groups = [tf(T, "security-group", "create", g) for g in ("web", "db", "ssh")]
        for vm, (ip, sgs, _listen) in VMS.items():
            sg_args = [a for g in sgs for a in ("--security-group", g)]
            self.ports[vm] = tf(T, "port", "create", "--network", "sg-net", "--fixed-ip",
                                f"subnet=sg-subnet,ip-address={ip}", *sg_args, vm)
        if run.args.api:                        # someone else's controller: leave it clean
            api = run.api.as_project(T)
            run.on_teardown(lambda: api.call("DELETE", f"networks/{net['id']}"))
            for g in groups:
                run.on_teardown(partial(api.call, "DELETE", f"security-groups/{g['id']}"))
            for p in self.ports.values():
                run.on_teardown(partial(api.call, "DELETE", f"ports/{p['id']}"))
        common.one_switch(run, self.ports)
        for vm, (_ip, _sgs, listen) in VMS.items():
            for port in listen:
                common.listen(run.net.get(vm), port)

    def tcp(self, run: LabRun, src: str, dst: str, port: int, expect: bool) -> tuple[str, bool]:
        """(check text, connected?) for src -> dst:port; tries more when it should pass (the
        controller needs a moment after a change), once when it should not."""
        got = common.tcp(run.net.get(src), VMS[dst][0], port, 6 if expect else 1)
        return f"tcp {src} -> {dst}:{port}", got

    def scenario(self, run: LabRun, c: Checker) -> None:
        vm = run.net.get

        def tf(*args: str) -> Any:
            """A change as the tenant types it, then wait until s1 has it (bounded)."""
            out = run.tf(*args)
            common.settle(run, "s1")
            return out

        def tcp(src: str, dst: str, port: int, expect: bool, why: str) -> None:
            what, got = self.tcp(run, src, dst, port, expect)
            c.reach(f"{what} ({why})", got, expect)

        c.section("Groups without ingress rules keep everything out (stateful: replies pass)")
        tcp("client", "web1", 80, False, "web has no ingress rule")
        tcp("client", "web1", 22, False, "web has no ingress rule")
        tcp("web1", "web2", 80, False, "web has no rule for its own members either")
        c.reach("ping client -> web1", common.ping(vm("client"), "10.0.0.11", 1), False)
        c.reach("ping web1 -> client (web's egress is open; client's default group lets any "
                "member in, web1 is none: blocked)", common.ping(vm("web1"), "10.0.0.10", 1), False)

        c.section("Open tcp/80 of group web from anywhere")
        r80 = tf(T, "security-group-rule", "create", "web", "--ingress", "--protocol", "tcp",
                 "--dst-port", "80", "--remote-ip", "0.0.0.0/0")
        tcp("client", "web1", 80, True, "the new rule")
        tcp("client", "web2", 80, True, "the same group")
        tcp("client", "web1", 22, False, "only tcp/80 is open")
        c.reach("ping client -> web1 (icmp not opened)", common.ping(vm("client"), "10.0.0.11", 1), False)

        c.section("Open tcp/22 for one VM only: group ssh (from the client's address) on web1")
        tf(T, "security-group-rule", "create", "ssh", "--ingress", "--protocol", "tcp",
           "--dst-port", "22", "--remote-ip", "10.0.0.10/32")
        tf(T, "port", "set", self.ports["web1"]["id"], "--no-security-group",
           "--security-group", "web", "--security-group", "ssh")
        tcp("client", "web1", 22, True, "web1 is in ssh now")
        tcp("client", "web2", 22, False, "web2 is not")
        tcp("db", "web1", 22, False, "ssh allows 10.0.0.10/32 only")

        c.section("Remote group: the database only for members of web")
        tf(T, "security-group-rule", "create", "db", "--ingress", "--protocol", "tcp",
           "--dst-port", "5432", "--remote-group", "web")
        tcp("web1", "db", 5432, True, "web1 is a member of web")
        tcp("web2", "db", 5432, True, "web2 too")
        tcp("client", "db", 5432, False, "client is not")
        tf(T, "port", "set", self.ports["web2"]["id"], "--no-security-group", "--security-group", "default")
        tcp("web2", "db", 5432, False, "web2 left web: the remote group follows membership")
        tcp("web1", "db", 5432, True, "web1 still a member")
        tf(T, "port", "set", self.ports["web2"]["id"], "--no-security-group", "--security-group", "web")
        tcp("web2", "db", 5432, True, "web2 back in web")

        c.section("Remove the tcp/80 rule while a connection is open")
        conn = self.open_connection(vm("client"), "10.0.0.11", 80)
        c.check("a long-lived connection client -> web1:80 is established", conn is not None)
        tf(T, "security-group-rule", "delete", r80["id"])
        tcp("client", "web2", 80, False, "the rule is gone: new connections blocked")
        if conn is not None:
            c.check("the live connection is cut (data sent after the removal does not arrive)",
                    self.cut(vm("client"), conn))
        tcp("client", "web1", 22, True, "web1's ssh rule is untouched")

        c.section("The group's flows (owner cookie kind 5 = security group)")
        assert run.ovs is not None
        counts = common.flows_by_owner(run.ovs.ofctl("--no-stats", "dump-flows", "s1"))
        c.note(f"ovs-ofctl dump-flows s1 by owner: {counts}")
        c.check("security-group-owned flows are on s1", counts.get("security-group", 0) > 0)
        diff = run.tf.raw("flows", "--url", run.controller.api_url, "--chassis", "s1", "--diff", check=False)
        c.equal("tenantflow flows --diff: desired = installed", diff.strip().splitlines()[-1:], ["in sync"])

    @staticmethod
    def open_connection(node: Any, ip: str, port: int) -> str | None:
        """A connection kept open by a shell coprocess writing lines on demand; its fifo path."""
        fifo = f"/tmp/tflab-conn-{node.name}-{port}-{time.monotonic_ns()}"
        node.cmd(f"mkfifo {fifo}; (timeout 60 nc -n {ip} {port} <{fifo} >/dev/null 2>&1; echo $? >{fifo}.rc) & "
                 f"exec 7>{fifo}; echo hello >&7")
        ok = common.wait_until(lambda: bool(node.cmd(f"ss -Htn state established dst {ip}:{port}").strip()), 5)
        return fifo if ok else None

    @staticmethod
    def cut(node: Any, fifo: str) -> bool:
        """After the rule is gone, data on the connection gets no answer: nc's connection
        ends (RST/timeout) or stays unacknowledged; True when the data was not acknowledged."""
        node.cmd("echo after-removal >&7")
        time.sleep(2)
        unacked = node.cmd("ss -Htn state established '( dport = :80 )' | awk '{print $2}'").split()
        closed = not node.cmd("ss -Htn state established '( dport = :80 )'").strip()
        node.cmd(f"exec 7>&-; rm -f {fifo} {fifo}.rc")
        # bytes still queued for sending (Send-Q > 0) = the server never acknowledged them
        return closed or any(x.isdigit() and int(x) > 0 for x in unacked)

    def hints(self, run: LabRun) -> str:
        tf = f"{common.TF_BIN} --url {run.controller.api_url} --project {T}"
        return f"""
*** security_groups ready: client 10.0.0.10 (default), web1 10.0.0.11 / web2 10.0.0.12 (web; nc on 80, 22),
    db 10.0.0.20 (db; nc on 5432). No ingress rules yet.
  mininet> client nc -zv -w1 10.0.0.11 80                # blocked
  mininet> sh {tf} security-group-rule create web --ingress --protocol tcp --dst-port 80 --remote-ip 0.0.0.0/0
  mininet> client nc -zv -w1 10.0.0.11 80                # passes now
  mininet> sh {tf} security-group-rule create db --ingress --protocol tcp --dst-port 5432 --remote-group web
  mininet> web1 nc -zv -w1 10.0.0.20 5432                # a member of web: passes
  mininet> sh {tf} security-group-rule list
  mininet> sh ovs-ofctl -O OpenFlow13 dump-flows s1 cookie=0x0500000000000000/0xff00000000000000
  mininet> sh ovs-appctl dpctl/dump-conntrack
"""


if __name__ == "__main__":
    sys.exit(common.main(SecurityGroups()))
