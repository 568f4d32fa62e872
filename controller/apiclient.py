"""The one HTTP helper of the controller-side commands (`flows`, `trace`, `status`).

Why shared: each asks the running controller's API one GET question, and each must find it and
authenticate the same way as the rest of the `tenantflow` CLI (TENANTFLOW_URL, TENANTFLOW_TOKEN).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9696"


def add_api_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("TENANTFLOW_URL", DEFAULT_URL),
                   help="API URL (env TENANTFLOW_URL; default %(default)s)")
    p.add_argument("--token", default=os.environ.get("TENANTFLOW_TOKEN"),
                   help="X-Auth-Token (env TENANTFLOW_TOKEN): an admin token with --auth builtin/keystone")


def get(prog: str, args: argparse.Namespace, path: str, params: dict[str, Any] | None = None,
        timeout: float = 60) -> Any | None:
    """GET path; the decoded JSON, or None after printing why not (the caller exits 1)."""
    import requests
    headers = {"X-Auth-Token": args.token} if args.token else {}
    try:
        r = requests.get(args.url.rstrip("/") + path, params=params, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        print(f"{prog}: cannot reach {args.url}: {exc}", file=sys.stderr)
        return None
    if r.status_code != 200:
        try:
            msg = r.json()["NeutronError"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = r.text[:300]
        print(f"{prog}: {r.status_code}: {msg}", file=sys.stderr)
        return None
    return r.json()
