"""What every subcommand shares: the app context, common options, one-line user errors."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import click
from rich.console import Console
from rich.text import Text

from pareco_fx.errors import UserInputError

__all__ = ["AppContext", "ErrorLine", "debug_option", "pass_app", "parse_floats", "check_names", "emit_json"]


@dataclass
class AppContext:
    """Per-invocation state: ``--debug`` and the consoles (tables on stdout, the rest on stderr)."""

    debug: bool = False
    out: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))


pass_app = click.make_pass_decorator(AppContext, ensure=True)


class ErrorLine(click.ClickException):
    """A user error shown as one red line on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        message = " ".join(line.strip() for line in self.format_message().splitlines() if line.strip())
        Console(stderr=True, soft_wrap=True).print(Text(f"error: {message}", style="bold red"))


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.ensure_object(AppContext).debug = True
    return value


debug_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
    help="Show the full traceback of errors.")


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """``"0.25,0.5"`` -> ``(0.25, 0.5)``.

    Raises:
        UserInputError: an entry is not a finite number.
    """
    try:
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        values = ()
    if not values or any(v != v or v in (float("inf"), float("-inf")) for v in values):
        raise UserInputError(f"bad {what} {text!r}: give numbers separated by commas, e.g. 0.25,0.5,1.0")
    return values


def check_names(names: Sequence[str], available: Sequence[str], what: str) -> None:
    """Raise a UserInputError naming the available choices if a name is not one of them."""
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UserInputError(f"unknown {what} {unknown[0]!r}; available: {', '.join(available)}")


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout (plain, never wrapped or highlighted)."""
    click.echo(json.dumps(obj, indent=2))
