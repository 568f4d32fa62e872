"""Each chassis' compiled state kept across a clean restart, so a restarted controller does not
compile again what it compiled before it stopped.

Why: at 10,000 ports a chassis' full compile is 5–8 s of a restart's 10 s on this machine
(docs/performance.md); reading back what the previous process compiled takes about 1 s. A compile
is a pure function of three things: the topology at a revision, the chassis' context (its switch
ports) and the code and settings that compile. The checkpoint stands in for the compile only when
all three are the same: the store still at the revision the checkpoint was written at, the context
built from the port cache (controller/portcache.py) equal to the saved one, and the fingerprint of
code and settings equal. Anything else (missing, unreadable, another revision, another context,
another version) costs only the time saved: the chassis compiles as before.

Written by the worker when `tenantflow serve` stops cleanly (SIGTERM/SIGINT), one controller only
(as the port cache: in HA the ownership decides what is compiled). A crash leaves the file of the
last clean stop, which is still right if nothing changed since; its revision says so.

The file is a pickle, and loading a pickle runs what it names, so it is trusted like the database
beside it: written with mode 0600 by this process, and ignored if it is not owned by our user or
is writable by group or others.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from topology.store.backends import beside_database

LOG = logging.getLogger(__name__)

VERSION = 2  # 2: a header pickle (version, fingerprint, revision) before the datapaths' pickle
# The packages whose code decides what a compile gives (flows, apps, the core, the view/model)
_CODE_PACKAGES = ("flows", "apps", "controller", "topology")
_ROOT = Path(__file__).resolve().parent.parent


def derived_path(store_url: str) -> str | None:
    """Default file: beside an SQLite store's database (…/x.db → …/x.db.compiled); other stores keep
    none unless `--compile-checkpoint` names one."""
    return beside_database(store_url, ".compiled")


_code_digest: str | None = None


def code_digest() -> str:
    """sha256 of every Python source file of the compiling packages (read once per process)."""
    global _code_digest
    if _code_digest is None:
        h = hashlib.sha256()
        for pkg in _CODE_PACKAGES:
            for f in sorted((_ROOT / pkg).rglob("*.py")):
                h.update(str(f.relative_to(_ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
        _code_digest = h.hexdigest()
    return _code_digest


def fingerprint(settings: Any, apps: Iterable[Any], extra: Any = None) -> str:
    """What besides the topology and the context decides a compile: the code, Python, the apps
    loaded, the settings they were configured with and the TENANTFLOW_* environment. A digest
    only: settings may hold secrets (the API token)."""
    h = hashlib.sha256()
    for part in (str(VERSION), sys.version, code_digest(), repr(settings), repr(extra),
                 ",".join(f"{type(a).__module__}.{type(a).__qualname__}" for a in apps),
                 repr(sorted((k, v) for k, v in os.environ.items() if k.startswith("TENANTFLOW_")))):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


@dataclass
class Checkpoint:
    """What a file held: the view revision it was compiled at, and per datapath
    {"chassis", "ctx", "engine", "reconciler"} (see Core._write_checkpoint)."""
    revision: int
    datapaths: dict[int, dict]


def save(path: str, fp: str, revision: int, datapaths: dict[int, dict]) -> bool:
    """Write atomically (temporary file, mode 0600, + rename): a crash mid-write leaves the previous file.
    Two pickles: a small header first, so a checkpoint of other code, settings or revision is
    refused without unpickling its 40-odd MB (≈ 1 s at 10,000 ports)."""
    try:
        d = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".compiled.", dir=d)
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump({"version": VERSION, "fingerprint": fp, "revision": revision},
                            fh, protocol=pickle.HIGHEST_PROTOCOL)
                pickle.dump(datapaths, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return True
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
        LOG.warning("could not write compile checkpoint %s: %s: %s", path, type(exc).__name__, exc)
        return False


def _trusted(path: str) -> str | None:
    """Why the file must not be loaded (None: it may)."""
    st = os.stat(path)
    if st.st_uid != os.getuid():
        return f"owned by uid {st.st_uid}, not {os.getuid()}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def load(path: str, fp: str, revision: int | None = None) -> tuple[Checkpoint | None, str]:
    """The checkpoint at `path` if it was written by this code with these settings (and, given
    `revision`, at that store revision), and why not. The body is read only if the header fits."""
    try:
        why = _trusted(path)
        if why is not None:
            LOG.warning("compile checkpoint %s ignored: %s", path, why)
            return None, why
        with open(path, "rb") as fh:
            head = pickle.load(fh)
            if not isinstance(head, dict) or head.get("version") != VERSION:
                return None, "written by another version"
            if head.get("fingerprint") != fp:
                return None, "written by other code or settings"
            rev = int(head["revision"])
            if revision is not None and rev != revision:
                return None, f"written at revision {rev}, the store is at {revision}"
            return Checkpoint(rev, dict(pickle.load(fh))), "ok"
    except FileNotFoundError:
        return None, "no file"
    except Exception as exc:  # noqa: BLE001 — any unpickling failure: the file is unusable, compile instead
        LOG.warning("compile checkpoint %s unusable (%s: %s); compiling", path, type(exc).__name__, exc)
        return None, f"unusable: {type(exc).__name__}"
