"""The switch ports each chassis had, kept in a local file so a restarted controller can compile
before its switches reconnect.

Why: a chassis' flows name ofports, which only the switch knows; a restart used to wait for the
switch's reconnect (OVS retries on whole seconds) before it could start a compile of several
seconds at 10,000 ports. With the ports the previous process saw, the compile starts as soon as
the topology is loaded, and the real ports, when the switch connects, only diff against it
(flows.engine's location inputs). A cache, never the truth: missing, unreadable, stale or
written by another version, it only costs that head start (stale ports are corrected on connect).
"""
from __future__ import annotations

import logging
import os
import tempfile

from typing import TYPE_CHECKING

from topology.store.backends import beside_database

if TYPE_CHECKING:  # the registry pulls in the apps; config.load (before the early listener) must not
    from controller.registry import SwitchPort

LOG = logging.getLogger(__name__)

VERSION = 1


def derived_path(store_url: str) -> str | None:
    """Default file: beside an SQLite store's database (…/x.db → …/x.db.ports); other stores keep
    none unless `--port-cache` names one."""
    return beside_database(store_url, ".ports")


def load(path: str) -> dict[int, tuple[str, dict[str, SwitchPort]]]:
    """dpid → (chassis name, {port name: SwitchPort}) as last saved; {} if none or unusable."""
    import msgpack
    from controller.registry import SwitchPort
    try:
        with open(path, "rb") as fh:
            data = msgpack.unpackb(fh.read(), raw=False, strict_map_key=False)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return {}
        out: dict[int, tuple[str, dict[str, SwitchPort]]] = {}
        for dpid, chassis, ports in data["datapaths"]:
            out[int(dpid)] = (str(chassis), {str(n): SwitchPort(str(n), int(o), bool(u)) for n, o, u in ports})
        return out
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        LOG.warning("port cache %s unusable (%s: %s); compiling after the switches connect",
                    path, type(exc).__name__, exc)
        return {}


def save(path: str, datapaths: dict[int, tuple[str, dict[str, SwitchPort]]]) -> bool:
    """Write atomically (temporary file + rename): a crash mid-write leaves the previous file."""
    import msgpack
    data = {"version": VERSION,
            "datapaths": [[dpid, chassis, [[p.name, p.ofport, p.up] for p in ports.values()]]
                          for dpid, (chassis, ports) in sorted(datapaths.items())]}
    try:
        d = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".ports.", dir=d)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgpack.packb(data, use_bin_type=True))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return True
    except OSError as exc:
        LOG.warning("could not write port cache %s: %s", path, exc)
        return False
