"""`tenantflow node metadata-agent`: the chassis side of the metadata service (one per chassis).

Plumbing (idempotent, like `node init`): a namespace (`tf-metadata`) holding 169.254.169.254/32
on `meta0`, whose veth peer `tap-meta` is on the integration bridge. The controller sees
tap-meta on the bridge (ChassisContext.metadata_port) and installs flows/metadata.py's flows,
which deliver every local VM's request to 169.254.169.254:80 with the source rewritten to a pool
address naming (port key, index of its fixed IP). The HTTP server's socket is opened inside the
namespace (setns in a short-lived thread), so this process itself stays where it can reach the
API and OVS. Per request: decode the peer address, ask the API about that port
(`/v2.0/tenantflow/metadata/ports/{key}`, admin token, cached briefly), answer
(controller/metadata_answers.py) or, in proxy mode, forward to Nova's metadata API with
X-Instance-ID, X-Tenant-ID, X-Forwarded-For and X-Instance-ID-Signature.

Bounded per VM: a token bucket per port key (429), at most 4 requests in flight and 8 open
connections per port, request bodies over 8 KiB refused (413), upstream answers capped at 1 MiB.
Runs in the foreground until SIGTERM/SIGINT, then removes its port and namespace (systemd:
contrib/systemd/).
"""
from __future__ import annotations

import argparse
import ctypes
import http.server
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from apps.ratelimit import TokenBuckets
from controller import metadata_answers as A
from flows import metadata as M

LOG = logging.getLogger("tenantflow.metadata")

PEER_IFNAME = "meta0"         # the namespace end of the veth
CACHE_TTL = 2.0               # seconds an API answer about a port is reused (a crawl is ~30 GETs)
CACHE_MAX = 4096
MAX_BODY = 8192
MAX_UPSTREAM = 1 << 20
MAX_IN_FLIGHT = 4
MAX_CONNECTIONS = 8           # open connections per VM port
CLONE_NEWNET = 0x40000000


class AgentError(RuntimeError):
    pass


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AgentError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


# ------------------------------------------------------------------ plumbing

class Plumbing:
    """The namespace, the veth and the bridge port; `ensure` is idempotent, `remove` undoes it."""

    def __init__(self, bridge: str, namespace: str, ovs_netns: str | None = None) -> None:
        self.bridge, self.ns, self.ovs_ns = bridge, namespace, ovs_netns

    def _ovs_ip(self, *args: str) -> list[str]:
        return ["ip", *(["-n", self.ovs_ns] if self.ovs_ns else []), *args]

    def ensure(self) -> None:
        if _run(["ip", "netns", "pids", self.ns], check=False).returncode != 0:
            _run(["ip", "netns", "add", self.ns])
        have_tap = _run(self._ovs_ip("link", "show", M.METADATA_IFNAME), check=False).returncode == 0
        have_peer = _run(["ip", "-n", self.ns, "link", "show", PEER_IFNAME], check=False).returncode == 0
        if not (have_tap and have_peer):
            _run(self._ovs_ip("link", "del", M.METADATA_IFNAME), check=False)
            _run(["ip", "link", "add", M.METADATA_IFNAME, "type", "veth", "peer", "name", PEER_IFNAME,
                  "netns", self.ns])
            if self.ovs_ns:
                _run(["ip", "link", "set", M.METADATA_IFNAME, "netns", self.ovs_ns])
        _run(self._ovs_ip("link", "set", M.METADATA_IFNAME, "up"))
        ns = ["ip", "-n", self.ns]
        _run(ns + ["link", "set", "lo", "up"])
        _run(ns + ["link", "set", PEER_IFNAME, "address", M.METADATA_MAC])
        _run(ns + ["addr", "replace", f"{M.METADATA_IP}/32", "dev", PEER_IFNAME])
        _run(ns + ["link", "set", PEER_IFNAME, "up"])
        _run(ns + ["route", "replace", M.GATEWAY_IP, "dev", PEER_IFNAME, "scope", "link"])
        _run(ns + ["route", "replace", "default", "via", M.GATEWAY_IP, "dev", PEER_IFNAME])
        _run(ns + ["neigh", "replace", M.GATEWAY_IP, "lladdr", M.GATEWAY_MAC, "dev", PEER_IFNAME,
                   "nud", "permanent"])
        # the userspace datapath does not finish partial checksums of what the kernel hands it
        _run(["ip", "netns", "exec", self.ns, "ethtool", "-K", PEER_IFNAME, "tx", "off"], check=False)
        _run(["ip", "netns", "exec", self.ns, "sysctl", "-qw", f"net.ipv6.conf.{PEER_IFNAME}.disable_ipv6=1"],
             check=False)
        _run(["ovs-vsctl", "--timeout=10", "--may-exist", "add-port", self.bridge, M.METADATA_IFNAME, "--",
              "set", "interface", M.METADATA_IFNAME, "external_ids:tenantflow=metadata"])

    def remove(self) -> None:
        _run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-port", self.bridge, M.METADATA_IFNAME], check=False)
        _run(self._ovs_ip("link", "del", M.METADATA_IFNAME), check=False)
        _run(["ip", "netns", "del", self.ns], check=False)


def listen_in_netns(namespace: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket inside `namespace`: setns(2) in a throwaway thread (setns changes the
    calling thread only; the socket keeps its namespace for its whole life)."""
    out: dict[str, Any] = {}

    def work() -> None:
        fd = -1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({namespace}): {os.strerror(err)}")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            out["sock"] = sock
        except OSError as exc:
            out["error"] = exc
        finally:
            if fd >= 0:
                os.close(fd)

    t = threading.Thread(target=work, name="metadata-setns")
    t.start()
    t.join()
    if "error" in out:
        raise AgentError(str(out["error"]))
    return out["sock"]


# ------------------------------------------------------------------ answering

class Lookup:
    """Port key → the API's metadata document, cached for CACHE_TTL seconds."""

    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        import requests
        self.session = requests.Session()
        if token:
            self.session.headers["X-Auth-Token"] = token
        self.url = url.rstrip("/")
        if self.url.endswith("/v2.0"):
            self.url = self.url[:-5]
        self.timeout = timeout
        self._cache: dict[int, tuple[float, dict | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, key: int) -> dict | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        r = self.session.get(f"{self.url}/v2.0/tenantflow/metadata/ports/{key}", timeout=self.timeout)
        if r.status_code == 404:
            doc = None
        elif r.status_code != 200:
            raise AgentError(f"API answered {r.status_code} about port key {key}: {r.text[:200]}")
        else:
            doc = r.json()["metadata"]
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (now + CACHE_TTL, doc)
        return doc


class Agent:
    """Everything a request handler needs: who is asking, limits, answers or proxy."""

    def __init__(self, lookup, availability_zone: str = "nova", rate: float = 20.0, burst: float = 100.0,
                 nova_host: str | None = None, nova_port: int = 8775, secret: str = "") -> None:
        self.lookup = lookup
        self.availability_zone = availability_zone
        self.limit = TokenBuckets(rate, burst)
        self.nova = (nova_host, nova_port) if nova_host else None
        self.secret = secret
        self._in_flight: dict[int, int] = {}
        self._lock = threading.Lock()
        self.stats: dict[str, int] = {}

    def count(self, what: str) -> None:
        with self._lock:
            self.stats[what] = self.stats.get(what, 0) + 1

    def enter(self, key: int) -> bool:
        with self._lock:
            n = self._in_flight.get(key, 0)
            if n >= MAX_IN_FLIGHT:
                return False
            self._in_flight[key] = n + 1
            return True

    def leave(self, key: int) -> None:
        with self._lock:
            n = self._in_flight.get(key, 1) - 1
            if n <= 0:
                self._in_flight.pop(key, None)
            else:
                self._in_flight[key] = n

    def who(self, peer: str) -> tuple[A.Who | None, int]:
        """(the asking VM, 0) or (None, HTTP status to refuse with)."""
        found = M.decode_source(peer)
        if found is None:
            return None, 403
        key, index = found
        doc = self.lookup(key)
        if doc is None:
            return None, 404
        ips = M.port_ipv4s(doc.get("port") or {})
        if index >= len(ips) or not (doc.get("port") or {}).get("device_id"):
            return None, 404
        return A.Who(doc, ips[index], self.availability_zone), 0

    def respond(self, who: A.Who, path: str, query: str) -> tuple[int, str, bytes]:
        if self.nova is None:
            return A.answer(who, path)
        return self.forward(who, path, query)

    def forward(self, who: A.Who, path: str, query: str) -> tuple[int, str, bytes]:
        """Proxy mode: Nova's metadata API identifies the instance by the signed headers."""
        import requests
        host, port = self.nova or ("", 0)
        headers = {"X-Instance-ID": who.instance_id, "X-Tenant-ID": who.project_id,
                   "X-Forwarded-For": who.ip,
                   "X-Instance-ID-Signature": A.instance_signature(who.instance_id, self.secret)}
        url = f"http://{host}:{port}{path}" + (f"?{query}" if query else "")
        try:
            with requests.get(url, headers=headers, timeout=10, stream=True) as r:
                body = r.raw.read(MAX_UPSTREAM + 1, decode_content=True)
                if len(body) > MAX_UPSTREAM:
                    return 502, A.TEXT, b"502 upstream answer too large\n"
                return r.status_code, r.headers.get("Content-Type", A.TEXT), body
        except requests.RequestException as exc:
            LOG.warning("Nova metadata API %s:%s unreachable for %s: %s", host, port, who.instance_id, exc)
            return 502, A.TEXT, b"502 Bad Gateway\n"


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "tenantflow-metadata"
    sys_version = ""
    timeout = 10
    protocol_version = "HTTP/1.1"

    @property
    def agent(self) -> Agent:
        return self.server.agent  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        LOG.debug("%s %s", self.client_address[0], format % args)

    def _send(self, status: int, ctype: str, body: bytes, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _refuse(self, status: int, why: str) -> None:
        self.agent.count(f"http_{status}")
        self.close_connection = True
        self._send(status, A.TEXT, f"{status} {why}\n".encode())

    def do_GET(self, head: bool = False) -> None:
        peer = self.client_address[0]
        found = M.decode_source(peer)
        if found is None:
            return self._refuse(403, "Forbidden")
        key = found[0]
        if not self.agent.limit.allow(key):
            return self._refuse(429, "Too Many Requests")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._refuse(400, "Bad Request")
        if length > MAX_BODY or length < 0:
            return self._refuse(413, "Request Entity Too Large")
        if length:
            self.rfile.read(length)
        if not self.agent.enter(key):
            return self._refuse(429, "Too Many Requests")
        try:
            try:
                who, status = self.agent.who(peer)
            except Exception as exc:  # noqa: BLE001 - API down or odd answer: the VM gets 503, not a hang
                LOG.warning("metadata request from %s (port key %s): lookup failed: %s", peer, key, exc)
                return self._refuse(503, "Service Unavailable")
            if who is None:
                return self._refuse(status, "Not Found" if status == 404 else "Forbidden")
            path, _, query = self.path.partition("?")
            try:
                code, ctype, body = self.agent.respond(who, path, query)
            except Exception:  # noqa: BLE001 - odd stored data must not kill the connection thread silently
                LOG.exception("metadata answer for %s (instance %s) GET %s failed", who.ip, who.instance_id, path)
                return self._refuse(500, "Internal Server Error")
            self.agent.count(f"http_{code}")
            LOG.info("%s (instance %s, port key %s) GET %s -> %s", who.ip, who.instance_id, key, path, code)
            self._send(code, ctype, body, head)
        finally:
            self.agent.leave(key)

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def _not_allowed(self) -> None:
        self._refuse(405, "Method Not Allowed")

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed


class Server(http.server.ThreadingHTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS open per VM port (idle keep-alive
    connections included: a VM cannot pin the agent's threads)."""
    daemon_threads = True

    def __init__(self, sock: socket.socket, agent: Agent) -> None:
        super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.agent = agent
        self._conns: dict[int, int] = {}          # port key → open connections
        self._conn_key: dict[int, int] = {}       # id(request socket) → its port key
        self._conn_lock = threading.Lock()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        found = M.decode_source(client_address[0])
        if found is None:
            return True                             # answered 403 by the handler
        with self._conn_lock:
            n = self._conns.get(found[0], 0)
            if n >= MAX_CONNECTIONS:
                self.agent.count("connections_refused")
                return False
            self._conns[found[0]] = n + 1
            self._conn_key[id(request)] = found[0]
        return True

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            key = self._conn_key.pop(id(request), None)
            if key is not None:
                left = self._conns.get(key, 1) - 1
                if left <= 0:
                    self._conns.pop(key, None)
                else:
                    self._conns[key] = left
        super().shutdown_request(request)


# ------------------------------------------------------------------ command line

def _metadata_conf(config_files: list[str]):
    from oslo_config import cfg
    from controller.config import METADATA_OPTS
    conf = cfg.ConfigOpts()
    conf.register_opts(METADATA_OPTS, group="metadata")
    conf([], project="tenantflow", default_config_files=config_files)
    return conf.metadata


def main(argv: list[str] | None = None) -> int:
    from controller.apiclient import DEFAULT_URL
    p = argparse.ArgumentParser(prog="tenantflow node metadata-agent",
                                description="serve 169.254.169.254 to this chassis' VMs (runs in the foreground)")
    p.add_argument("--name", required=True, help="chassis name (logs; the chassis' bridge carries the flows)")
    p.add_argument("--bridge", default="br-int")
    p.add_argument("--url", default=os.environ.get("TENANTFLOW_URL", DEFAULT_URL),
                   help="API URL (env TENANTFLOW_URL; default %(default)s)")
    p.add_argument("--token", default=os.environ.get("TENANTFLOW_TOKEN"),
                   help="admin X-Auth-Token (env TENANTFLOW_TOKEN)")
    p.add_argument("--config-file", action="append", default=[],
                   help="INI with a [metadata] section (nova_metadata_host, nova_metadata_port, "
                        "metadata_proxy_shared_secret, availability_zone, rate, burst)")
    p.add_argument("--namespace", default=M.METADATA_NAMESPACE, help="network namespace (default %(default)s)")
    p.add_argument("--ovs-netns", default=None,
                   help="namespace where OVS's datapath lives, when not this one (containers, test beds)")
    p.add_argument("--listen-port", type=int, default=M.METADATA_TCP_PORT, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        mconf = _metadata_conf(args.config_file)
    except Exception as exc:  # noqa: BLE001 - oslo.config's several error types: one clear line
        print(f"tenantflow node metadata-agent: config: {exc}", file=sys.stderr)
        return 2
    plumbing = Plumbing(args.bridge, args.namespace, args.ovs_netns)
    try:
        plumbing.ensure()
        sock = listen_in_netns(args.namespace, M.METADATA_IP, args.listen_port)
    except (AgentError, OSError, subprocess.SubprocessError) as exc:
        print(f"tenantflow node metadata-agent: {exc}", file=sys.stderr)
        return 1
    agent = Agent(Lookup(args.url, args.token), mconf.availability_zone, mconf.rate, mconf.burst,
                  mconf.nova_metadata_host, mconf.nova_metadata_port, mconf.metadata_proxy_shared_secret or "")
    server = Server(sock, agent)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True,
                              name="metadata-http")
    thread.start()
    mode = f"proxy to {mconf.nova_metadata_host}:{mconf.nova_metadata_port}" if mconf.nova_metadata_host \
        else "answering from tenantflow"
    LOG.info("metadata agent of chassis %s ready: %s:%s in namespace %s, port %s on %s, %s", args.name,
             M.METADATA_IP, args.listen_port, args.namespace, M.METADATA_IFNAME, args.bridge, mode)
    print(f"metadata-agent ready: chassis {args.name}", flush=True)
    while not stop.wait(1.0):
        pass
    LOG.info("metadata agent of chassis %s stopping", args.name)
    server.shutdown()
    server.server_close()
    plumbing.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
