"""`tenantflow instance set|show|delete DEVICE_ID`: the user data and SSH keys the metadata
service answers an instance (the ports' device_id) with — /v2.0/tenantflow/instances."""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path

from topology.cli.client import Client, CliError

DEFAULT_URL = "http://127.0.0.1:9696"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tenantflow instance")
    p.add_argument("--url", default=os.environ.get("TENANTFLOW_URL", DEFAULT_URL))
    p.add_argument("--project", default=os.environ.get("TENANTFLOW_PROJECT"))
    p.add_argument("--token", default=os.environ.get("TENANTFLOW_TOKEN"))
    sub = p.add_subparsers(dest="verb", required=True)
    s = sub.add_parser("set", help="set user data and/or SSH keys (keys given replace all keys)")
    s.add_argument("device_id")
    s.add_argument("--user-data", metavar="FILE", help="file whose content is the user data ('-' = stdin)")
    s.add_argument("--no-user-data", action="store_true", help="remove the user data")
    s.add_argument("--key", action="append", default=[], metavar="NAME=PUBKEY|NAME=@FILE",
                   help="an SSH public key (repeatable)")
    s.add_argument("--no-keys", action="store_true", help="remove every key")
    for verb in ("show", "delete"):
        sub.add_parser(verb).add_argument("device_id")
    return p


def _body(args: argparse.Namespace) -> dict:
    inst: dict = {}
    if args.no_user_data:
        inst["user_data"] = None
    elif args.user_data:
        raw = sys.stdin.buffer.read() if args.user_data == "-" else Path(args.user_data).read_bytes()
        inst["user_data"] = base64.b64encode(raw).decode()
    if args.no_keys:
        inst["public_keys"] = {}
    elif args.key:
        keys = {}
        for item in args.key:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise CliError(f"--key must be NAME=PUBKEY or NAME=@FILE, got {item!r}")
            keys[name] = Path(value[1:]).read_text().strip() if value.startswith("@") else value
        inst["public_keys"] = keys
    return {"instance": inst}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    client = Client(args.url, args.project, args.token)
    path = f"tenantflow/instances/{args.device_id}"
    try:
        if args.verb == "set":
            out = client.call("PUT", path, _body(args))
        elif args.verb == "show":
            out = client.call("GET", path)
        else:
            client.call("DELETE", path)
            return 0
    except (CliError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out.get("instance", out) if isinstance(out, dict) else out, indent=2, sort_keys=True))
    return 0
