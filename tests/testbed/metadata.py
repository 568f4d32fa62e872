"""A chassis' metadata agent in a test bed: `tenantflow node metadata-agent` started from the
test netns (where the API is), plumbing its namespace's veth into the chassis netns' OVS."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from .controller import tenantflow_bin
from .proc import popen, stop_process, wait_until


class MetadataAgent:
    def __init__(self, bed: Any, chassis: Any, config: dict[str, Any] | None = None) -> None:
        self.bed, self.chassis = bed, chassis
        self.ns = bed.ns_name(f"meta-{chassis.name}")
        bed.register_namespace(self.ns)
        self.log = Path(bed.workdir) / f"metadata-agent-{chassis.name}.log"
        self.argv = [tenantflow_bin(), "node", "metadata-agent", "--name", chassis.name, "--bridge", chassis.bridge,
                     "--url", bed.controller.api_url, "--namespace", self.ns, "--ovs-netns", chassis.ns,
                     "--log-level", "DEBUG"]
        if config:
            ini = Path(bed.workdir) / f"metadata-{chassis.name}.ini"
            ini.write_text("[metadata]\n" + "".join(f"{k} = {v}\n" for k, v in config.items()))
            self.argv += ["--config-file", str(ini)]
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> "MetadataAgent":
        out = open(self.log, "a")
        proc = self.proc = popen(self.argv, env=self.chassis.env, stdout=out, stderr=subprocess.STDOUT)
        ok = wait_until(lambda: "metadata-agent ready" in self.log.read_text() or proc.poll() is not None,
                        timeout, 0.1)
        if not ok or proc.poll() is not None:
            raise RuntimeError(f"metadata agent did not start:\n{self.log.read_text()[-3000:]}")
        # the controller sees tap-meta and installs the ARP answer for 169.254.169.254
        if not self.chassis.wait_flow("arp_tpa=169.254.169.254", timeout=timeout):
            raise RuntimeError(f"no metadata flows on {self.chassis.name}:\n" +
                               "\n".join(self.chassis.dump_flows()))
        return self

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        rc = stop_process(self.proc, timeout=10)
        self.proc = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any("169.254.169.254" in f for f in self.chassis.dump_flows()):
            time.sleep(0.1)
        return rc
