"""`tenantflow` command line: one noun per resource of the one resource table, talking to the REST API.

Why its own CLI beside `openstack`: scripts and labs need a small dependency-free client with
stable output (`-f json`, `-f value -c id`); options follow the openstack client's names.
`serve`, `node` and `flows` belong to the controller and are imported lazily.

Layout: client (HTTP), output (table/json/value), verbs (the generic verbs of every noun, from
topology.model.schema), resources (each noun's own options and bodies), this module (the parser and
the entry point).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from topology.cli.client import CliError, Client
from topology.cli.resources import NOUNS
from topology.cli.verbs import Commands, NounSpec, add_noun
from topology.model.schema import RESOURCES

DEFAULT_URL = "http://127.0.0.1:9696"
# Controller-side commands: (module whose main(argv) runs it, what it does — shown by `tenantflow --help`).
DELEGATED: dict[str, tuple[str, str]] = {
    "serve": ("controller.serve", "run the controller: OpenFlow to the bridges and the Neutron API"),
    "node": ("controller.node", "prepare this host's bridge and join it to the controllers (node init)"),
    "flows": ("controller.inspect", "a chassis' desired flows by owner; --diff against the switch"),
    "trace": ("controller.trace", "push a packet from a port through the desired flows, stage by stage"),
    "status": ("controller.status", "controllers, switches, flows desired vs installed, feed lag"),
    "instance": ("topology.cli.instances", "user data and SSH keys of an instance (metadata service)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tenantflow", description="tenantflow networking CLI")
    parser.add_argument("--url", default=os.environ.get("TENANTFLOW_URL", DEFAULT_URL),
                        help="API URL (env TENANTFLOW_URL; default %(default)s)")
    parser.add_argument("--project", default=os.environ.get("TENANTFLOW_PROJECT"),
                        help="act as this project (X-Project-Id); default: admin in the default project")
    parser.add_argument("--token", default=os.environ.get("TENANTFLOW_TOKEN"), help="static API token")
    nouns = Commands(parser, "resource")
    for name, (_module, what) in DELEGATED.items():
        nouns.passthrough(name, help=what)
    for res in RESOURCES:  # a resource without options of its own still gets list/show/delete
        add_noun(nouns, res, NOUNS.get(res.kind, NounSpec()))
    return parser


def _delegate(name: str, argv: list[str]) -> int:
    module_name = DELEGATED[name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"tenantflow {name}: {module_name} is not available ({exc})", file=sys.stderr)
        return 2
    result = module.main(argv)
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in DELEGATED:
        return _delegate(args_list[0], args_list[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(args_list)
    if args.resource in DELEGATED:
        # Controller-owned subcommands take their own options: hand them over untouched.
        rest = args_list[args_list.index(args.resource) + 1:]
        if args.resource == "instance":   # an API client like the nouns: the global options apply
            rest = ["--url", args.url, *(["--project", args.project] if args.project else []),
                    *(["--token", args.token] if args.token else []), *rest]
        return _delegate(args.resource, rest)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    client = Client(args.url, args.project, args.token)
    try:
        args.func(client, args)
    except CliError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
