"""`mossep models` (the pretrained models by name, and whether each is cached) and `mossep models pull NAME`."""
from __future__ import annotations

import json

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from ..errors import MossepError
from ..hub import REGISTRY, cached_record, fetch, lookup
from ..hub.cache import models_root
from ..hub.registry import BUNDLED
from .app import app

models_app = typer.Typer(help="Pretrained models by name: list them, or download one ahead of use.",
                         invoke_without_command=True, no_args_is_help=False)
app.add_typer(models_app, name="models")


def _state(entry) -> tuple[str, str | None]:
    if entry.hub == BUNDLED:
        return "installed", None
    record = cached_record(entry)
    return (f"cached ({record['commit'][:8]})", record["commit"]) if record else ("not cached", None)


@models_app.callback()
def models(ctx: typer.Context,
           as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table.")) -> None:
    """List every model name with its architecture, rate, talkers, size, licence, use and cache state.
    `--model NAME` (or Separator("NAME")) fetches it on first use; full hub ids work too
    (hf:ORG/NAME, modelscope:ORG/NAME, optionally @REVISION)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = []
    for entry in REGISTRY:
        state, commit = _state(entry)
        rows.append({"name": entry.name, "hub": entry.hub_id, "revision": entry.revision or None,
                     "cached_revision": commit, "arch": entry.arch, "sample_rate": entry.sample_rate,
                     "talkers": entry.talkers, "size": entry.size, "licence": entry.licence, "use": entry.use,
                     "state": state})
    if as_json:
        typer.echo(json.dumps({"cache": str(models_root()), "models": rows}, indent=1))
        return
    typer.echo(f"cache: {models_root()}")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for column in ("name", "model", "rate", "spk", "size", "state"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(r["name"], r["arch"], f"{r['sample_rate'] // 1000} kHz", str(r["talkers"]), r["size"], r["state"])
    console = Console()
    console.print(table)
    console.print("When to pick which (licence):")
    for r in rows:
        console.print(f"  [bold]{r['name']}[/bold] ({r['licence']}): {r['use']}", highlight=False)
    typer.echo("--model NAME fetches a model on first use (then offline); MOSSEP_CACHE moves the cache, "
               "MOSSEP_OFFLINE=1 forbids the network.")


@models_app.command()
def pull(name: str = typer.Argument(..., help="A name from `mossep models`, or hf:ORG/NAME, modelscope:ORG/NAME.")
         ) -> None:
    """Download a model into the cache (verified against its hub's hashes) without separating anything."""
    entry = lookup(name)
    if entry is None:
        raise MossepError(f"{name}: not a model name (`mossep models` lists them) nor hf:ORG/NAME or "
                          "modelscope:ORG/NAME")
    if entry.hub == BUNDLED:
        typer.echo(f"{entry.name}: installed with mossep; nothing to download")
        return
    record = fetch(entry)
    typer.echo(f"{entry.name}: {entry.hub_id} revision {record['commit']} in {record['path']}")
