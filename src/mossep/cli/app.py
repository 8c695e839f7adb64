"""The typer application that every command module registers itself on."""
import typer

app = typer.Typer(
    name="mossep",
    help="Separate overlapping talkers with MossFormer: one audio file per speaker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
