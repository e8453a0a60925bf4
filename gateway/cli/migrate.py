"""`tollway prices import` and `tollway import-litellm`: bringing prices and configs in from files
the operator fetched (nothing here opens a network connection)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from gateway.accounting.pricing import override_path, today_utc
from gateway.cli.litellm_import import translate
from gateway.cli.price_import import PriceImportError, import_prices, render
from gateway.config.load import ConfigError, load_config, resolve_config_path


def add_migrate_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prices = commands.add_parser("prices", help="the price table")
    actions = prices.add_subparsers(dest="prices_command", required=True)
    importing = actions.add_parser(
        "import",
        help="write the imported price file from LiteLLM's model_prices_and_context_window.json or our YAML",
    )
    importing.add_argument(
        "files", nargs="+", type=Path, help="price files; a later one wins for a model named twice"
    )
    importing.add_argument(
        "-o", "--output", type=Path, help="where to write (default: the config's pricing.file)"
    )
    importing.add_argument(
        "--as-of",
        type=date.fromisoformat,
        help="the date of the prices (default: today; a YAML file's own if newer)",
    )
    importing.add_argument("--config", help="config whose pricing.file is the output (default as for serve)")
    importing.set_defaults(run=cmd_prices_import)
    litellm = commands.add_parser(
        "import-litellm", help="translate a LiteLLM proxy config.yaml into a Tollway config"
    )
    litellm.add_argument("file", type=Path)
    litellm.add_argument(
        "-o", "--output", type=Path, help="where to write the Tollway config (default: stdout)"
    )
    litellm.set_defaults(run=cmd_import_litellm)


def cmd_prices_import(args: argparse.Namespace) -> int:
    output: Path | None = args.output
    if output is None:
        try:
            config = load_config(resolve_config_path(args.config, os.environ))
        except ConfigError as err:
            print(f"{err.source}: {'; '.join(err.errors)} (or give -o FILE)", file=sys.stderr)
            return 1
        output = override_path(config.pricing)[0]
    try:
        table, kinds, report = import_prices(args.files, args.as_of or today_utc())
    except PriceImportError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not report.imported:
        print("no price could be imported; nothing written", file=sys.stderr)
        for line in report.lines():
            print(line, file=sys.stderr)
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text(render(table, kinds, args.files, report), encoding="utf-8")
    partial.replace(output)  # whole or not at all: a gateway starting meanwhile reads the old file
    print(f"{output}: as_of {table.as_of.isoformat()}; restart or reload (SIGHUP) the gateway to use it")
    for line in report.lines():
        print(line)
    return 0


def cmd_import_litellm(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
        translation = translate(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    rendered = translation.render(str(args.file))
    if args.output is None:
        sys.stdout.write(rendered)
    else:
        args.output.write_text(rendered, encoding="utf-8")
        print(
            f"{args.output}: {len(translation.config['providers'])} providers, "
            f"{len(translation.config['models'])} models; check it with `tollway check-config {args.output}`",
            file=sys.stderr,
        )
    print(f"not carried over: {len(translation.unsupported)} item(s)", file=sys.stderr)
    for path, why in translation.unsupported:
        print(f"  {path}: {why}", file=sys.stderr)
    if translation.env:
        print(f"environment variables it reads: {', '.join(sorted(translation.env))}", file=sys.stderr)
    return 0
