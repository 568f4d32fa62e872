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
    core = Core(store, service, apps, cfg.settings, check_with=check_with)
    dispatcher = Dispatcher(core)
    try:
        from topology.api.app import create_app, serve_in_thread
    except ImportError:  # only while the API package is missing from a partial checkout
        LOG.error("topology.api.app is not available: serving OpenFlow only, no REST API")
        return store, service, core, dispatcher, None
    routes = inspect.routes(core, dispatcher) + trace.routes(core)
    app = create_app(service, api_token=cfg.settings.api_token, extra_routes=routes)
    wsgi = metrics.instrument(app, core, dispatcher, store)  # /metrics outside auth, like an exporter
    api = serve_in_thread(wsgi, cfg.api_host, cfg.api_port)
    return store, service, core, dispatcher, api


def start_openflow(core, dispatcher):
    from os_ken.base.app_manager import AppManager
    from controller.ofapp import TenantflowApp

    TenantflowApp.core = core
    TenantflowApp.dispatcher = dispatcher
    mgr = AppManager.get_instance()
    mgr.load_apps(["controller.ofapp", "os_ken.controller.ofp_handler"])
    contexts = mgr.create_contexts()
    mgr.instantiate_apps(**contexts)
    return mgr


def main(argv: list[str] | None = None) -> int:
    _patch_hub()
    from controller import config

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config.load(argv)
    except (ValueError, SystemExit) as exc:
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
        store, _service, core, dispatcher, api = build(cfg)
    except AppLoadError as exc:  # a configuration error: one line, no traceback
        print(f"tenantflow serve: {exc}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 — report any start-up failure as one clear error
        LOG.exception("tenantflow serve failed to start")
        return 1
    core.start()
    dispatcher.start()
    start_openflow(core, dispatcher)
    if not _wait_listening(cfg.ofp_host, cfg.ofp_port):
        LOG.error("OpenFlow listener on %s:%d did not come up", cfg.ofp_host, cfg.ofp_port)
        if api is not None:
            api.close()
        _exit(1)
    LOG.info("tenantflow ready: api=http://%s:%d ofp=tcp:%s:%d store=%s", cfg.api_host, cfg.api_port,
             cfg.ofp_host, cfg.ofp_port, cfg.store)
    while not stop.is_set():
        stop.wait(0.5)
    try:
        if api is not None:
            api.close()
        dispatcher.stop()
        core.stop()
        store.close()
    except Exception:  # noqa: BLE001 — shutting down anyway
        LOG.exception("error during shutdown")
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
