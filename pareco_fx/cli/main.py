"""The ``pareco-fx`` click group: registers the subcommands and turns errors into one line.

A :class:`~pareco_fx.errors.ParecoError` or a usage error prints one red line on stderr and exits
with code 2; ``--debug`` (on the group or any subcommand) prints the traceback first.
"""
from __future__ import annotations

import traceback

import click

from pareco_fx import __version__
from pareco_fx.cli.context import AppContext, ErrorLine, debug_option
from pareco_fx.cli.export import export_cmd
from pareco_fx.cli.front import front_cmd
from pareco_fx.cli.inspect import inspect_cmd
from pareco_fx.cli.slim import slim_cmd
from pareco_fx.errors import ParecoError

__all__ = ["cli"]


class ParecoGroup(click.Group):
    """A click group whose subcommands fail with one red line instead of a traceback."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[no-untyped-def]
        extra.setdefault("obj", AppContext())  # before any --debug callback runs
        return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except ParecoError as e:
            if ctx.find_object(AppContext).debug:
                traceback.print_exception(e)
            raise ErrorLine(str(e) or type(e).__name__) from e
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            raise ErrorLine(f"{e.format_message()} (see `{where} --help`)") from e


@click.group(cls=ParecoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pareco-fx")
@debug_option
def cli() -> None:
    """Make any PyTorch model slimmable per channel group and train it with PareCO.

    MODEL is a Python file defining model() (and optionally example_inputs() and datasets()),
    or torchvision:NAME.
    """


cli.add_command(inspect_cmd)
cli.add_command(slim_cmd)
cli.add_command(front_cmd)
cli.add_command(export_cmd)
