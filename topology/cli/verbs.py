"""The generic verbs of every resource noun (create, list, show, delete, set/update), built from the one
resource table (topology.model.schema: noun, URL collection, body keys, list columns, updatable).

Why a small Commands wrapper around argparse: the CLI keeps its own handle on each level of
sub-commands, so it never has to dig the sub-parsers back out of argparse's private attributes.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from topology.cli.client import Client
from topology.cli.output import add_output_options, emit
from topology.model.schema import Resource

Handler = Callable[[Client, argparse.Namespace], Any]
AddArgs = Callable[[argparse.ArgumentParser], object]
BuildBody = Callable[[Client, argparse.Namespace], dict]


class Commands:
    """One level of sub-commands (the resource nouns, or one noun's verbs)."""

    def __init__(self, parent: argparse.ArgumentParser, dest: str) -> None:
        self._sub = parent.add_subparsers(dest=dest, required=True)

    def group(self, name: str, help: str) -> Commands:
        """A noun whose verbs are the next level."""
        return Commands(self._sub.add_parser(name, help=help), "verb")

    def passthrough(self, name: str, help: str) -> None:
        """A command that parses its own arguments (serve, node, flows)."""
        self._sub.add_parser(name, help=help, add_help=False)

    def leaf(self, name: str, func: Handler, add_args: AddArgs | None = None) -> argparse.ArgumentParser:
        """A verb that runs `func(client, args)` and prints its result (-f/-c)."""
        parser = self._sub.add_parser(name)
        if add_args is not None:
            add_args(parser)
        add_output_options(parser)
        parser.set_defaults(func=func)
        return parser


@dataclass(frozen=True)
class Filter:
    """`<noun> list --flag VALUE` → ?attr=VALUE; a name is resolved to an id in collection `resolve_in`."""
    flag: str
    attr: str
    resolve_in: str | None = None

    @property
    def dest(self) -> str:
        return self.attr.replace(":", "_")


@dataclass(frozen=True)
class NounSpec:
    """What one resource's CLI adds to the generic verbs: create/set options and bodies, list filters,
    and extra verbs (e.g. router add-interface)."""
    create_args: AddArgs | None = None
    create_body: BuildBody | None = None
    update_args: AddArgs | None = None
    update_body: BuildBody | None = None
    filters: tuple[Filter, ...] = ()
    extra: Callable[[Commands], None] | None = None


def add_noun(nouns: Commands, res: Resource, spec: NounSpec) -> Commands:
    """create/list/show/delete (+ set/update when the resource is updatable) for one resource."""
    verbs = nouns.group(res.command, help=f"{res.singular.replace('_', ' ')} commands")
    collection, singular = res.collection, res.singular
    if spec.create_body is not None:
        build_create = spec.create_body

        def create(client: Client, args: argparse.Namespace) -> None:
            emit(args, client.call("POST", collection, {singular: build_create(client, args)})[singular])
        verbs.leaf("create", create, spec.create_args)

    def list_(client: Client, args: argparse.Namespace) -> None:
        params: list[tuple[str, str]] = []
        for f in spec.filters:
            for value in getattr(args, f.dest) or []:
                params.append((f.attr, client.resolve(f.resolve_in, value) if f.resolve_in else value))
        emit(args, client.call("GET", collection, params=params)[res.plural], list(res.columns))

    def list_args(parser: argparse.ArgumentParser) -> None:
        for f in spec.filters:
            parser.add_argument(f.flag, dest=f.dest, action="append")
    verbs.leaf("list", list_, list_args)

    def show(client: Client, args: argparse.Namespace) -> None:
        emit(args, client.call("GET", f"{collection}/{client.resolve(collection, args.ref)}")[singular])
    verbs.leaf("show", show, lambda p: p.add_argument("ref", metavar=singular.upper()))

    def delete(client: Client, args: argparse.Namespace) -> None:
        for ref in args.refs:
            client.call("DELETE", f"{collection}/{client.resolve(collection, ref)}")
    verbs.leaf("delete", delete, lambda p: p.add_argument("refs", nargs="+", metavar=singular.upper()))

    if res.updatable and spec.update_body is not None:
        build_update, update_args = spec.update_body, spec.update_args

        def update(client: Client, args: argparse.Namespace) -> None:
            rid = client.resolve(collection, args.ref)
            emit(args, client.call("PUT", f"{collection}/{rid}", {singular: build_update(client, args)})[singular])

        def set_args(parser: argparse.ArgumentParser) -> None:
            parser.add_argument("ref", metavar=singular.upper())
            if update_args is not None:
                update_args(parser)
        for verb in ("set", "update"):
            verbs.leaf(verb, update, set_args)
    if spec.extra is not None:
        spec.extra(verbs)
    return verbs
