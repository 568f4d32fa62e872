"""`tenantflow serve`: store + API + os-ken OpenFlow controller in one process.

Why it ends with os._exit: os-ken's native hub threads (the OpenFlow listener, per-switch
loops) are non-daemon and cannot be cancelled, so after an orderly shutdown of everything we
own (API, feed, worker, store) the process leaves without waiting for them. Flows stay on the
switches (fail_mode=secure), so a restart loses no packets.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time

LOG = logging.getLogger("tenantflow.serve")


def _patch_hub() -> None:
    """Under OSKEN_HUB_TYPE=eventlet everything (threading, sockets, time) must be green,
    or waitress' and the store's threads would block the whole hub."""
    if os.environ.get("OSKEN_HUB_TYPE") == "eventlet":
        # Not hub.patch(thread=True): eventlet reads an explicit True as "patch only these", so
        # that call patches threading alone and leaves select/socket/time blocking the hub.
        # Green DNS pulls in dnspython (~15 MB resident) for lookups we never make.
        os.environ.setdefault("EVENTLET_NO_GREENDNS", "yes")
        import eventlet
        eventlet.monkey_patch()


def _wait_listening(host: str, port: int, timeout: float = 10.0) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "") else host
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((target, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class EarlyListener:
    """The OpenFlow listening socket, opened before the slow part of start-up (apps, store, the
    topology load) and handed to os-ken's StreamServer when it asks for one.

    Why: a switch whose controller went away retries once a second (OVS's max_backoff ≥ 1 s).
    An attempt during our start-up used to be refused and the next came up to a second later;
    now it waits in the kernel's accept queue and the switch is connected as soon as os-ken
    accepts (≈ 0.6 s sooner in a 10,000-port restart, bench_scale). os-ken's hub creates its
    sockets with `hub.listen` (both hubs), which we wrap for our port only."""

    def __init__(self, host: str, port: int) -> None:
        from os_ken.lib import hub
        self.port = port
        self.taken = threading.Event()
        self._original = hub.listen
        self._sock = hub.listen((host, port))  # hub's own options (reuse_addr, backlog; green under eventlet)
        hub.listen = self._listen

    def _listen(self, addr, *args, **kwargs):
        sock = self._sock
        if sock is not None and isinstance(addr, tuple) and addr[1] == self.port:
            self._sock = None
            self.taken.set()
            return sock
        return self._original(addr, *args, **kwargs)

    def close(self) -> None:
        """Start-up failed before os-ken took the socket: stop accepting for it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class AppLoadError(Exception):
    """A configured app spec ("module[:factory]") could not be loaded. Serving without it would
    converge every switch to a pipeline lacking that app's flows, i.e. delete them: refuse to start."""


def _load_apps(factories: list[str], announce: bool = True) -> list:
    """Instances from every factory in `factories`; raises AppLoadError on the first that fails."""
    import importlib
    apps: list = []
    for spec in factories:
        module, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr or "default_apps")
            apps.extend(factory())
        except Exception as exc:  # noqa: BLE001 — any failure here must stop start-up
            raise AppLoadError(f"cannot load apps from {spec!r}: {type(exc).__name__}: {exc}") from exc
    if announce:
        LOG.info("apps: %s", ", ".join(getattr(a, "name", type(a).__name__) for a in apps) or "none")
    return apps


def build(cfg):
    """Everything but the os-ken apps: (store, service, core, dispatcher, api handle)."""
    from controller.core import Core
    from controller.dispatch import Dispatcher
    from controller import inspect, metrics, trace
    from topology.store.backends import open_store
    from topology.model.service import Service

    apps = _load_apps(cfg.apps)  # first: a bad app spec fails before anything opens or connects
    store = open_store(cfg.store)
    service = Service(store, cfg.settings)
    check_with = (lambda: _load_apps(cfg.apps, announce=False)) if getattr(cfg, "check_compile", False) else None
    core = Core(store, service, apps, cfg.settings, check_with=check_with, gateway=getattr(cfg, "gateway", None),
                port_cache=getattr(cfg, "port_cache", None),
                checkpoint_file=getattr(cfg, "compile_checkpoint", None), freeze_gc=True)
    dispatcher = Dispatcher(core)
    try:
        from topology.api.app import create_app, serve_in_thread
    except ImportError:  # only while the API package is missing from a partial checkout
        LOG.error("topology.api.app is not available: serving OpenFlow only, no REST API")
        return store, service, core, dispatcher, None
    routes = inspect.routes(core, dispatcher) + trace.routes(core)
    auth = build_auth(cfg, store, service.settings)
    app = create_app(service, auth=auth, extra_routes=routes)
    from topology.api import dashboard   # /dashboard/ (static files) and /metrics: outside auth, like an exporter
    wsgi = metrics.instrument(dashboard.mount(auth.wsgi(app)), core, dispatcher, store)
    api = serve_in_thread(wsgi, cfg.api_host, cfg.api_port)
    return store, service, core, dispatcher, api


class AuthConfigError(Exception):
    """The auth mode cannot start as configured (e.g. builtin without an admin password at first
    start): refuse to serve rather than serve without the authentication asked for."""


def build_auth(cfg, store, settings):
    """The API's auth mode (topology.api.auth), logged at start so nobody mistakes noauth for auth."""
    from topology.api.auth import make_auth
    mode = getattr(cfg, "auth", "noauth")
    identity = None
    keystone_conf = None
    if mode == "builtin":
        from topology.model.identity import Identity, NotBootstrapped
        identity = Identity(store, token_ttl=getattr(cfg, "token_expiration", 3600))
        try:
            identity.bootstrap(getattr(cfg, "admin_password", None), settings.default_project_id)
        except NotBootstrapped as exc:
            raise AuthConfigError(str(exc)) from None
    elif mode == "keystone":
        keystone_conf = {"oslo_config_config": cfg.conf} if getattr(cfg, "conf", None) is not None else {}
    try:
        auth = make_auth(mode, default_project_id=settings.default_project_id, api_token=settings.api_token,
                         identity=identity, public_endpoint=getattr(cfg, "public_endpoint", None),
                         keystone_conf=keystone_conf)
    except ValueError as exc:
        raise AuthConfigError(str(exc)) from None
    (LOG.warning if mode == "noauth" and settings.api_token is None else LOG.info)("%s", auth.describe())
    return auth


def build_ownership(cfg, core):
    """Who is master of which chassis (controller/ownership.py): with HA on, membership and the
    assignment live in etcd and the core only sends to datapaths this controller is master of."""
    from urllib.parse import urlparse
    from controller.ownership import EtcdOwnership, SoloOwnership
    ha = getattr(cfg, "ha", None)
    if ha is None or ha.mode != "on":
        return SoloOwnership()
    url = urlparse(cfg.store)
    ownership = EtcdOwnership(url.hostname or "127.0.0.1", url.port or 2379, url.path.rstrip("/") or "/tenantflow",
                              ha.member_id, address=f"{cfg.ofp_host}:{cfg.ofp_port}", ttl=ha.lease_ttl,
                              interval=ha.interval, on_master=core.request_resync, xids=core.xids)
    core.is_master = ownership.is_master
    core.sole_writer = False  # a switch's flows are read after MASTER (request_resync), not at connect
    core.compiles = ownership.compiles  # compile only the chassis we own (the work is shared)
    core.standby = ownership.is_standby  # and keep our standby share warm, after our own flushes
    core.owned_elsewhere = ownership.owned_elsewhere  # gateway liveness: the owner speaks for a chassis

    def ha_stats() -> dict:  # the ownership as etcd has it, with chassis names for people
        out = ownership.stats()
        for dpid, owner in out["owners"].items():
            e = core.registry.get(int(dpid, 16))
            owner["chassis"] = e.chassis if e is not None else None
        return out
    core.ha_stats = ha_stats
    LOG.info("HA on: member %s, lease %ds, rounds every %.2fs", ha.member_id, ha.lease_ttl, ha.interval)
    return ownership


def start_openflow(core, dispatcher, ownership=None):
    from os_ken.base.app_manager import AppManager
    from controller.ofapp import TenantflowApp

    TenantflowApp.core = core
    TenantflowApp.dispatcher = dispatcher
    if ownership is not None:
        TenantflowApp.ownership = ownership
    mgr = AppManager.get_instance()
    mgr.load_apps(["controller.ofapp", "os_ken.controller.ofp_handler"])
    contexts = mgr.create_contexts()
    mgr.instantiate_apps(**contexts)
    return mgr


def main(argv: list[str] | None = None) -> int:
    from controller import heap
    heap.limit_arenas()  # before any thread allocates (controller/heap.py)
    _patch_hub()
    from controller import config

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config.load(argv)
    except SystemExit as exc:  # --help (0), or argparse's own usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2
    except ValueError as exc:
        print(f"tenantflow serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, cfg.log_level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("os_ken").setLevel(max(logging.WARNING, logging.getLogger().level))

    stop = threading.Event()

    def _on_signal(signum, _frame):
        LOG.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    try:
        early = EarlyListener(cfg.ofp_host, cfg.ofp_port)
    except OSError as exc:
        print(f"tenantflow serve: cannot listen for OpenFlow on {cfg.ofp_host}:{cfg.ofp_port}: {exc}", file=sys.stderr)
        return 1
    try:
        store, _service, core, dispatcher, api = build(cfg)
    except (AppLoadError, AuthConfigError) as exc:  # a configuration error: one line, no traceback
        early.close()
        print(f"tenantflow serve: {exc}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 — report any start-up failure as one clear error
        early.close()
        LOG.exception("tenantflow serve failed to start")
        return 1
    ownership = build_ownership(cfg, core)
    core.start()
    ownership.start()
    dispatcher.start()
    start_openflow(core, dispatcher, ownership)
    if not early.taken.wait(10) or not _wait_listening(cfg.ofp_host, cfg.ofp_port):
        LOG.error("OpenFlow listener on %s:%d did not come up", cfg.ofp_host, cfg.ofp_port)
        if api is not None:
            api.close()
        _exit(1)
    LOG.info("tenantflow ready: api=http://%s:%d ofp=tcp:%s:%d store=%s", cfg.api_host, cfg.api_port,
             cfg.ofp_host, cfg.ofp_port, cfg.store)
    while not stop.is_set():
        stop.wait(0.5)
    # first: hand our chassis over now, not after the lease TTL; each step runs even if one fails
    steps = [("ownership", ownership.stop), ("api", api.close if api is not None else None),
             ("dispatcher", dispatcher.stop), ("core", core.stop), ("store", store.close)]
    for name, step in steps:
        if step is None:
            continue
        try:
            step()
        except Exception:  # noqa: BLE001 — shutting down anyway; say which step failed
            LOG.exception("error during shutdown (%s)", name)
    LOG.info("tenantflow stopped")
    _exit(0)
    return 0


def _exit(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
