"""How the CLI prints results: a table (default), JSON, or bare values (`-f value -c id` for scripts)."""
from __future__ import annotations

import argparse
import json
from typing import Any

FORMATS = ("table", "json", "value")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """`-f/--format` and `-c/--column`, on every command that prints a result."""
    parser.add_argument("-f", "--format", choices=FORMATS, default="table")
    parser.add_argument("-c", "--column", action="append", help="show only this column (repeatable)")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line, fmt(headers), line, *[fmt(r) for r in rows], line])


def emit(args: argparse.Namespace, data: Any, columns: list[str] | None = None) -> None:
    """Print one object (field/value rows) or a list (one row each, `columns` unless -c is given)."""
    fmt = args.format
    chosen = args.column or None
    if isinstance(data, list):
        cols = chosen or columns or (sorted(data[0]) if data else [])
        if fmt == "json":
            print(json.dumps([{c: d.get(c) for c in cols} if chosen else d for d in data], indent=2))
        elif fmt == "value":
            for d in data:
                print(" ".join(cell(d.get(c)) for c in cols))
        else:
            print(table(cols, [[cell(d.get(c)) for c in cols] for d in data]))
        return
    if data is None:
        return
    keys = chosen or sorted(data)
    if fmt == "json":
        print(json.dumps({k: data.get(k) for k in keys}, indent=2))
    elif fmt == "value":
        for k in keys:
            print(cell(data.get(k)))
    else:
        print(table(["Field", "Value"], [[k, cell(data.get(k))] for k in keys]))
