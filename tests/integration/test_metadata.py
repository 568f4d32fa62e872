"""Metadata service end to end: VMs (namespaces) on overlapping tenant networks fetch their own
OpenStack and EC2 metadata from 169.254.169.254 through a chassis' `tenantflow node
metadata-agent`; cloud-init's OpenStack datasource reads it; proxy mode signs for a stub Nova."""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from tests.integration.test_dhcp_clients import start_controller, udhcpc
from tests.testbed.api import NeutronApiError
from tests.testbed.metadata import MetadataAgent

pytestmark = pytest.mark.integration

CIDR = "10.30.0.0/24"
VM_IP = "10.30.0.5"
UD_A = b"#cloud-config\nhostname: alpha\n"
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlpha alice@example"
SECRET = "s3cret-for-nova"
SYSTEM_PYTHON = "/usr/bin/python3"
URL = "http://169.254.169.254"


def _curl(vm, path: str, timeout: float = 8.0) -> tuple[int, str]:
    res = vm.run(["curl", "-s", "-m", "5", "-w", "\n%{http_code}", URL + path], check=False, timeout=timeout)
    body, _, code = res.stdout.rpartition("\n")
    return int(code or 0), body


@pytest.fixture(scope="module")
def world(module_bed):
    bed = module_bed
    start_controller(bed)
    c1 = bed.add_chassis("c1")
    assert c1.wait_connected(timeout=20), bed.diagnostics()
    vms, agent = {}, None
    for tenant, device, name in (("tenant-a", "inst-a", "alpha"), ("tenant-b", "inst-b", "bravo")):
        api = bed.api.as_project(tenant)
        net = api.create("networks", name=f"net-{tenant}")
        api.create("subnets", network_id=net["id"], cidr=CIDR, ip_version=4, gateway_ip=None)
        port = api.create("ports", network_id=net["id"], name=name, device_id=device, device_owner="compute:nova",
                          fixed_ips=[{"ip_address": VM_IP}], port_security_enabled=False)
        if agent is None:   # tenant A: static address and route
            vm = bed.add_vm(c1, port, ip=f"{VM_IP}/24", name=name)
            vm.run(["ip", "route", "replace", "169.254.169.254/32", "dev", "eth0"])
            agent = MetadataAgent(bed, c1).start()
        else:               # tenant B: address and the route to 169.254.169.254 by DHCP (option 121)
            vm = bed.add_vm(c1, port, ip=False, name=name)
            ok, env = udhcpc(vm)
            assert ok and env.get("ip") == VM_IP, f"{env}\n{bed.diagnostics()}"
        vms[tenant] = (vm, port, api)
    vms["tenant-a"][2].put("tenantflow/instances/inst-a", {"instance": {
        "user_data": base64.b64encode(UD_A).decode(), "public_keys": {"alice": KEY_A}}})
    yield bed, c1, vms, agent
    agent.stop()


def test_openstack_and_ec2_answers(world):
    bed, c1, vms, agent = world
    vm, port, _ = vms["tenant-a"]
    code, body = _curl(vm, "/openstack/latest/meta_data.json")
    assert code == 200, f"{code} {body}\n{agent.log.read_text()[-2000:]}\n" + "\n".join(c1.dump_flows())
    md = json.loads(body)
    assert md["uuid"] == "inst-a" and md["hostname"] == "alpha" and md["name"] == "alpha"
    assert md["project_id"] == "tenant-a" and md["availability_zone"] == "nova"
    assert md["public_keys"] == {"alice": KEY_A}
    assert _curl(vm, "/openstack/latest/user_data") == (200, UD_A.decode())
    nd = json.loads(_curl(vm, "/openstack/latest/network_data.json")[1])
    assert nd["networks"][0]["ip_address"] == VM_IP and nd["links"][0]["ethernet_mac_address"] == port["mac_address"]
    assert _curl(vm, "/openstack/latest/vendor_data.json") == (200, "{}")
    assert _curl(vm, "/latest/meta-data/instance-id") == (200, "inst-a")
    assert _curl(vm, "/latest/meta-data/hostname") == (200, "alpha")
    assert _curl(vm, "/latest/meta-data/local-ipv4") == (200, VM_IP)
    assert _curl(vm, "/latest/meta-data/public-keys/") == (200, "0=alice")
    assert _curl(vm, "/latest/meta-data/public-keys/0/openssh-key") == (200, KEY_A)
    assert _curl(vm, "/latest/user-data") == (200, UD_A.decode())


def test_same_ip_in_another_tenant_gets_its_own_answers(world):
    _, _, vms, _ = world
    vm, port, api = vms["tenant-b"]
    dhcp_ip = next(p["fixed_ips"][0]["ip_address"] for p in api.list("ports", network_id=port["network_id"])
                   if p["device_owner"] == "network:dhcp")
    assert f"169.254.169.254 via {dhcp_ip} dev eth0" in vm.run(["ip", "route"]).stdout   # option 121, isolated subnet
    md = json.loads(_curl(vm, "/openstack/latest/meta_data.json")[1])
    assert md["uuid"] == "inst-b" and md["project_id"] == "tenant-b" and md["public_keys"] == {}
    assert _curl(vm, "/openstack/latest/user_data")[0] == 404      # tenant B set none
    assert _curl(vm, "/latest/meta-data/instance-id") == (200, "inst-b")
    # and tenant B cannot read tenant A's instance through the API either
    with pytest.raises(NeutronApiError) as err:
        api.get("tenantflow/instances/inst-a")
    assert err.value.status == 404


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists() or shutil.which("cloud-init") is None,
                    reason="Debian package cloud-init not installed (.ci/run installs it)")
def test_cloud_init_openstack_datasource_accepts_the_answers(world):
    _, _, vms, _ = world
    vm, port, _ = vms["tenant-a"]
    script = (
        "import json\n"
        "from cloudinit.sources.helpers import openstack\n"
        f"r = openstack.MetadataReader({URL!r}, timeout=5, retries=1).read_v2()\n"
        f"net = openstack.convert_net_json(r['networkdata'], known_macs={{{port['mac_address']!r}: 'eth0'}})\n"
        "print(json.dumps({'uuid': r['metadata']['uuid'], 'hostname': r['metadata']['hostname'],\n"
        "  'keys': r['metadata']['public_keys'], 'userdata': r['userdata'].decode(), 'version': r['version'],\n"
        "  'ec2_id': r['ec2-metadata'].get('instance-id'), 'net': net}))\n")
    res = vm.run([SYSTEM_PYTHON, "-c", script], timeout=60)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["uuid"] == "inst-a" and out["hostname"] == "alpha" and out["keys"] == {"alice": KEY_A}
    assert out["userdata"] == UD_A.decode() and out["version"] == 2 and out["ec2_id"] == "inst-a"
    assert out["net"]["config"][0]["name"] == "eth0"


class _StubNova(http.server.BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        iid = self.headers.get("X-Instance-ID", "")
        want = hmac.new(SECRET.encode(), iid.encode(), hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(want, self.headers.get("X-Instance-ID-Signature", ""))
        seen = {"path": self.path, "instance": iid, "tenant": self.headers.get("X-Tenant-ID"),
                "forwarded_for": self.headers.get("X-Forwarded-For"), "signed": ok}
        self.seen.append(seen)
        body = json.dumps(seen).encode() if ok else b"bad signature"
        self.send_response(200 if ok else 403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_proxy_mode_signs_for_nova_and_limits_each_vm(world):
    bed, c1, vms, agent = world
    nova = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StubNova)
    threading.Thread(target=nova.serve_forever, daemon=True).start()
    agent.stop()
    proxy = MetadataAgent(bed, c1, {"nova_metadata_host": "127.0.0.1", "nova_metadata_port": nova.server_port,
                                    "metadata_proxy_shared_secret": SECRET, "rate": 0.5, "burst": 6})
    try:
        proxy.start()
        vm, _, _ = vms["tenant-b"]
        code, body = _curl(vm, "/openstack/latest/meta_data.json?x=1")
        assert code == 200, f"{code} {body}\n{proxy.log.read_text()[-2000:]}"
        assert json.loads(body) == {"path": "/openstack/latest/meta_data.json?x=1", "instance": "inst-b",
                                    "tenant": "tenant-b", "forwarded_for": VM_IP, "signed": True}
        codes = [_curl(vm, "/latest/meta-data/instance-id")[0] for _ in range(8)]
        assert 429 in codes and 200 in codes, codes
        # the other VM's budget is its own
        assert _curl(vms["tenant-a"][0], "/latest/meta-data/instance-id")[0] == 200
    finally:
        proxy.stop()
        nova.shutdown()
        agent.start()     # the module fixture stops it again
