"""How the ``vidpipe`` commands call flows and report what went wrong (shared by ``cli.py`` and ``cli_maintenance.py``).

A bad input prints **one line** on stderr — what is wrong and what to do — and exits with code 2; an unexpected error
prints one line naming the exception and exits with code 1. The full traceback stays in the flow run's Prefect logs
(``prefect flow-run logs ID``) and is printed with ``vidpipe --debug`` (or ``VIDPIPE_DEBUG=1``), which also shows
Prefect's INFO lines on the console.

This module imports neither Prefect nor the flows at import time: ``vidpipe --help`` and ``vidpipe inspect`` must
start in a fraction of a second.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, NoReturn, Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["DEBUG_ENV", "debug_enabled", "set_debug", "fail", "one_line", "parse_overrides", "quiet_prefect_console",
           "run_flow"]

#: environment variable behind ``vidpipe --debug`` (inherited by the processes a command starts)
DEBUG_ENV = "VIDPIPE_DEBUG"

_err = Console(stderr=True, soft_wrap=True)  # one error = one line (greppable, copyable)


def debug_enabled() -> bool:
    """Whether ``--debug`` (or ``VIDPIPE_DEBUG=1``) asked for full tracebacks and Prefect's INFO lines."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def set_debug(on: bool, *, quiet_prefect: bool = True) -> None:
    """Turn debug output on for this process and the processes it starts; without it (and with ``quiet_prefect``),
    Prefect's console shows warnings and errors only.

    Must run before Prefect is imported: Prefect reads its console handler's level from the environment once, when it
    sets up logging.
    """
    if on:
        os.environ[DEBUG_ENV] = "1"
    elif quiet_prefect:
        # Prefect's console shows warnings and errors only; the API log handler still ships every record of a flow
        # run to the server, so the UI and `prefect flow-run logs` keep the INFO lines and the tracebacks.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr and exit with ``code``."""
    _err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (the exception's name when it has no message)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


class _NoRunTracebacks(logging.Filter):
    """Console filter: drop the error records (with tracebacks) Prefect logs when a flow or task run raises, and the
    "Still processing items" notes its background workers (``EventsWorker``, ``APILogWorker``) print at exit.

    The CLI prints the error itself, on one line; the records still reach the server through the API handler.
    """

    _PREFIXES = ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith(self._PREFIXES):
            return False
        return not (record.name.endswith("Worker") and str(record.msg).startswith("Still processing items"))


def quiet_prefect_console() -> None:
    """Add :class:`_NoRunTracebacks` to Prefect's console handlers (idempotent; nothing to do under ``--debug``)."""
    if debug_enabled():
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, _NoRunTracebacks) for f in handler.filters):
            handler.addFilter(_NoRunTracebacks())


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the input is wrong" (exit 2), as opposed to a failure of vidpipe itself (exit 1)."""
    from prefect.exceptions import ParameterTypeError

    from features.sources import SourceError
    from features.store import StoreError

    return ValueError, SourceError, StoreError, FileNotFoundError, KeyError, ParameterTypeError


def run_flow(fn: Callable[..., Any], *, quiet_console: bool = True, **kwargs: Any) -> Any:
    """Call a flow (or a plain function) with ``kwargs``; report a failure as one line and exit non-zero.

    ``quiet_console`` drops flow and task runs' error records from the console (the CLI prints its own line); ``serve``
    passes False, since its console is the log of the runs it executes.

    Returns what ``fn`` returns. Raises :class:`typer.Exit` with code 2 for a bad input (``ValueError``,
    ``SourceError``, ``StoreError``, a missing file, a parameter the flow's schema refuses) and 1 for anything else;
    with ``--debug`` the exception propagates with its full traceback instead.
    """
    if quiet_console:
        quiet_prefect_console()
    try:
        return fn(**kwargs)
    except (KeyboardInterrupt, typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line unless --debug
        if debug_enabled():
            raise
        if isinstance(exc, _user_errors()):
            fail(one_line(exc), 2)
        fail(f"{type(exc).__name__}: {one_line(exc)} (rerun with `vidpipe --debug ...` for the full traceback)", 1)


def parse_overrides(items: Optional[Sequence[str]], option: str = "--set") -> dict[str, Any]:
    """``["dim=32", "name=x"]`` → ``{"dim": 32, "name": "x"}`` (values are JSON when they parse as JSON).

    Raises:
        typer.BadParameter: an item without ``=`` or with an empty field name.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{option} {item!r}: expected FIELD=VALUE, e.g. {option} dim=32")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
