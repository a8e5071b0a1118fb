"""Command-line interface: a thin Typer layer over the public API.

Exit codes: 0 success, 1 a check failed (``check`` conditions, ``inspect --verify``,
an attack point onnxruntime disagrees with), 2 bad input or error — always one line on
stderr (the traceback only with ``--debug``).
"""
from __future__ import annotations

import functools
import sys
import traceback
from typing import Any, Callable, Optional

import typer
from typer.core import TyperCommand, TyperGroup
from typing_extensions import Annotated

from .. import __version__
from ..errors import OnnxlipError
from .common import err, out

try:  # typer >= 0.22 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException  # type: ignore[no-redef]


def _flag_help(option: Any) -> Any:
    """--help is a flag: no value placeholder in the help text."""
    if option is not None:
        option.metavar = ""
    return option


class Command(TyperCommand):
    """A command whose --help shows as a flag."""

    def get_help_option(self, ctx: Any) -> Any:
        return _flag_help(super().get_help_option(ctx))


class OneLineErrors(TyperGroup):
    """Usage errors (unknown option, missing argument) as one ``error:`` line, exit 2."""

    def get_help_option(self, ctx: Any) -> Any:
        return _flag_help(super().get_help_option(ctx))

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # help was shown for a bare command
                message = exc.format_message()
                if message.strip():
                    out.print(message, markup=False, highlight=False)
                sys.exit(exc.exit_code)
            where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "onnxlip"
            err.print(f"error: {where}: {exc.format_message()} (see {where} --help)", soft_wrap=True, markup=False)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Provable Lipschitz bounds and robustness radii for ReLU networks in ONNX.")



def _traceback_and_exit() -> None:
    """--debug: the whole traceback on stderr, and the same exit code as without it."""
    traceback.print_exc(file=sys.stderr)
    raise typer.Exit(2) from None


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any error into one line on stderr and exit code 2 (traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except OnnxlipError as exc:
            if kwargs.get("debug"):
                _traceback_and_exit()
            err.print(f"error: {exc}", soft_wrap=True, markup=False)
            raise typer.Exit(2) from None
        except Exception as exc:  # a bug or an input we did not foresee: still one line
            if kwargs.get("debug"):
                _traceback_and_exit()
            message = " ".join(str(exc).split())
            err.print(f"error: internal {type(exc).__name__}: {message} (rerun with --debug)", soft_wrap=True,
                      markup=False)
            raise typer.Exit(2) from None

    return wrapper



def _version(value: bool) -> None:
    if value:
        out.print(f"onnxlip {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", metavar="", callback=_version, is_eager=True,
                                                    help="Show the version and exit.")] = None,
) -> None:
    """Provable Lipschitz bounds and robustness radii for ReLU networks in ONNX.

    Every command takes --help; computing commands share --input/--key, --eps, --norm,
    --device, --method, --json, --quiet and --debug. Exit codes: 0 ok, 1 a check failed,
    2 bad input.
    """



# The commands register themselves on ``app`` when their modules load (they import it).
from . import bound_commands, certify_commands, check_commands  # noqa: E402,F401  (registration)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

