"""The ``evkit`` command: list, status, sql, send, cancel, resume and watch runs.

When a process owns the store (a kernel running workflows on it), every command but
``resume`` goes through that owner's control endpoint (``evkit.client``): the owner
answers with its live statuses, and ``resume`` is refused naming it. With no owner, read
commands (``list``, ``status``, ``sql``, ``watch``) open the store read-only and never
create a file; ``send``, ``cancel`` and ``resume`` open it writable through a runtime,
but only if the file exists: nothing but a program that runs workflows creates a store.
Tables are for people (rich); ``--json`` prints one JSON document for scripts
(the keys are documented in docs/cli.md). Errors are one message on stderr that names
the flag or command to use: exit 1 when an operation failed, 2 for a usage error or a
missing store, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from evkit.client import OWNER_FILE_WAIT_SECONDS, ControlClient, new_event_id
from evkit.errors import (
    EvkitError,
    OwnerUnreachableError,
    ReadOnlyQueryError,
    StoreError,
    StoreLockedError,
    StoreNotFoundError,
    WorkflowNotFoundError,
)
from evkit.model import DEFAULT_STORAGE, MAX_EVENT_KEY_CHARS, RunSnapshot, WorkflowStatus
from evkit.owner_file import OwnerInfo, live_owner

if TYPE_CHECKING:
    # Bound at run time by _load_the_store_side(), which the paths that use them call first.
    import duckdb  # noqa: TC004

    from evkit import api  # noqa: TC004
    from evkit.store.connection import open_store_read_only, translate  # noqa: TC004
    from evkit.store.overview import list_runs, run_overview  # noqa: TC004

_T = TypeVar("_T")

LOCK_WAIT_SECONDS = 2.0
"""How long a command that reads the store retries it while another process has it open.

Another ``evkit`` command holds a store for a fraction of a second (``watch`` opens it
for each refresh); a process that runs workflows holds it until it ends.
"""
WATCH_REFRESH_SECONDS = 0.5
"""How often ``evkit watch`` reads the store again."""

_FINAL = {s.value for s in WorkflowStatus if s.is_final}
_SQL_TABLE_ROWS = 1000  # a table for people; --json gives every row


class CliError(Exception):
    """An error for the command line's user: the message to print and the exit status."""

    def __init__(self, message: str, *, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


# ---------------------------------------------------------------------- the parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evkit",
        description="Inspect, drive and resume evkit workflows stored in a DuckDB file.",
        epilog="Exit status: 0 done, 1 the operation failed, 2 usage error or missing store, "
        "130 interrupted (Ctrl-C).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--storage",
        metavar="PATH",
        help="the store file (default: $EVKIT_STORAGE, else evkit.duckdb)",
    )
    common.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
    sub.add_parser("list", parents=[common], help="list every run and its status")
    status = sub.add_parser("status", parents=[common], help="show one run: its steps and events")
    status.add_argument("workflow_id", metavar="ID")
    sql = sub.add_parser(
        "sql", parents=[common], help="run a read-only SQL query (views: workflows, steps, events)"
    )
    sql.add_argument("query", metavar="QUERY")
    send = sub.add_parser("send", parents=[common], help="send an event to a run's wait on KEY")
    send.add_argument("workflow_id", metavar="ID")
    send.add_argument("key", metavar="KEY")
    send.add_argument(
        "payload", metavar="JSON", nargs="?", default="null", help="the payload (default: null)"
    )
    cancel = sub.add_parser("cancel", parents=[common], help="cancel a run")
    cancel.add_argument("workflow_id", metavar="ID")
    resume = sub.add_parser("resume", parents=[common], help="resume a run here until it ends")
    resume.add_argument("workflow_id", metavar="ID")
    resume.add_argument("--watch", action="store_true", help="show the run's steps on stderr as they change")
    watch = sub.add_parser("watch", parents=[common], help="show a run's steps and events until it ends")
    watch.add_argument("workflow_id", metavar="ID")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments after ``evkit`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 (the operation failed), 2 (usage error, missing store) or
        130 (interrupted).

    Raises:
        SystemExit: ``--help``, or arguments argparse refuses (status 2).
    """
    args = _parser().parse_args(argv)
    command = f"evkit {args.command}"
    storage = os.path.abspath(args.storage or os.environ.get("EVKIT_STORAGE") or DEFAULT_STORAGE)
    try:
        try:
            return _COMMANDS[args.command](args, storage)
        except _StoreHeld:
            # The holder may be an owner that was still writing its owner file: once it
            # has, the command goes through it (nothing was done yet).
            if _wait_for_owner(storage) is None:
                raise
            return _COMMANDS[args.command](args, storage)
    except KeyboardInterrupt:
        print(f"{command}: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`evkit list | head`): not an error to report. Python would
        # complain again when it flushes stdout at exit, so stdout goes nowhere from here.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CliError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return exc.exit_status
    except OwnerUnreachableError as exc:
        print(f"{command}: {_owner_gone(exc, args, storage)}", file=sys.stderr)
        return 1
    except EvkitError as exc:
        print(f"{command}: {_cli_words(str(exc), args)}", file=sys.stderr)
        return 1
    except (TypeError, ValueError) as exc:
        # evkit's own checks of an argument (the CLI checks the ones it knows first).
        print(f"{command}: {exc}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------- the store's owner


def _owner(storage: str) -> ControlClient | None:
    """A client of the process that owns the store now, or ``None`` if none does."""
    info = live_owner(storage)
    return ControlClient(info) if info is not None else None


def _wait_for_owner(storage: str) -> OwnerInfo | None:
    deadline = time.monotonic() + OWNER_FILE_WAIT_SECONDS
    while (info := live_owner(storage)) is None and time.monotonic() < deadline:
        time.sleep(0.02)  # an owner writes its file a moment after it opens the store
    return info


def _owner_gone(exc: OwnerUnreachableError, args: argparse.Namespace, storage: str) -> str:
    flag = _storage_flag(args, storage)
    owner = f"process {exc.pid} on host {exc.host!r}"
    if "did not answer" in str(exc):
        return (
            f"the owner of store {storage!r} ({owner}) did not answer in time: its event loop may "
            "be busy (a notebook cell running synchronous code holds the kernel's loop). Run "
            f"`evkit {args.command}` again, or give it longer with $EVKIT_CLIENT_TIMEOUT_SECONDS."
        )
    return (
        f"the owner of store {storage!r} ({owner}) stopped answering during this command "
        f"({str(exc).split('(', 1)[-1].split(')', 1)[0]}). If it has exited, the store is "
        f"free: `evkit list{flag}` reads it, and `evkit resume ID{flag}` continues a run. What "
        "this command asked may or may not have been done: check with "
        f"`evkit status ID{flag}`."
    )


# ---------------------------------------------------------------------- opening the store


def _load_the_store_side() -> None:
    """Import DuckDB, the store's readers and the engine (``evkit.api``), once.

    A command that the store's owner answers needs only the owner file, the HTTP client
    and rich; these imports are most of a cold start, so only the paths that open the
    store themselves (``_reading``, ``_writing``) load them, here.
    """
    global duckdb, api, open_store_read_only, translate, list_runs, run_overview
    import duckdb

    from evkit import api
    from evkit.store.connection import open_store_read_only, translate
    from evkit.store.overview import list_runs, run_overview


def _storage_flag(args: argparse.Namespace, storage: str) -> str:
    """The ``--storage`` flag a suggested command needs (none when the default is meant)."""
    return f" --storage {storage}" if args.storage else ""


class _StoreHeld(CliError):
    """Another process has the store open for writing (``watch`` keeps its last view then)."""


def _check_path(storage: str) -> None:
    if os.path.isdir(storage):
        raise CliError(
            f"store {storage!r} is a directory. Pass the store's file with --storage PATH, e.g. "
            f"--storage {os.path.join(storage, DEFAULT_STORAGE)}.",
            exit_status=2,
        )
    if not os.path.exists(storage):
        raise CliError(
            f"store {storage!r} does not exist. Pass the store's file with --storage PATH (or "
            "set $EVKIT_STORAGE); the evkit command never creates a store: a program that "
            "runs workflows does (workflow.init).",
            exit_status=2,
        )


def _held(exc: StoreLockedError, storage: str, advice: str, *, owner_waited_for: bool = False) -> CliError:
    holder = f"pid {exc.pid}" if exc.pid is not None else "pid unknown"
    message = f"store {storage!r} is held by another process ({holder}): {advice}"
    # A _StoreHeld makes main() wait for an owner file; workflow.init has waited already.
    return CliError(message) if owner_waited_for else _StoreHeld(message)


def _retry_while_locked(open_: Callable[[], object], deadline: float) -> None:
    while True:
        try:
            open_()
            return
        except StoreLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)  # another command holds the file for a moment


@contextlib.contextmanager
def _reading(args: argparse.Namespace, storage: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store opened read-only, closed at the end; CLI errors for what goes wrong."""
    _check_path(storage)
    _load_the_store_side()
    opened: list[duckdb.DuckDBPyConnection] = []
    try:
        _retry_while_locked(
            lambda: opened.append(open_store_read_only(storage)), time.monotonic() + LOCK_WAIT_SECONDS
        )
    except StoreNotFoundError:
        _check_path(storage)  # it was removed since: say so
        raise
    except StoreLockedError as exc:
        raise _held(
            exc,
            storage,
            "a program that runs workflows has it open for writing, and DuckDB then lets no "
            f"other process read it. Run `evkit {args.command}` again once that process has "
            "closed the store (workflow.shutdown(), or stop its kernel), or query it from that "
            "process (workflow.sql(...), workflow.list_all())."
            + (
                " To watch a run that an `evkit resume` runs, start it as `evkit resume ID --watch`."
                if args.command == "watch"
                else ""
            ),
        ) from None
    con = opened[0]
    try:
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def _writing(args: argparse.Namespace, storage: str, held_advice: str) -> Iterator[None]:
    """A runtime on the existing store (``loop="thread"``); closed at the end (runs stay RESUMABLE)."""
    _check_path(storage)
    _load_the_store_side()
    try:
        # init waits for a command that reads the store for a moment, or for an owner's file.
        api.init(storage=storage, loop="thread")
    except StoreLockedError as exc:
        raise _held(exc, storage, held_advice, owner_waited_for=True) from None
    try:
        yield
    finally:
        api.shutdown()


# ---------------------------------------------------------------------- output


def _console(*, stderr: bool = False) -> Console:
    console = Console(highlight=False, soft_wrap=False, stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped output is read by programs and people's pagers: do not fold ids at 80.
        console = Console(highlight=False, soft_wrap=False, stderr=stderr, width=200)
    return console


def _jsonable(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _print_json(document: object) -> None:
    print(json.dumps(_jsonable(document), indent=2))


def _cell(value: object) -> Text:
    if value is None:
        return Text("")
    if isinstance(value, dt.datetime):
        return Text(value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"))
    # Text, not a str: rich would read "[...]" in a value as markup.
    return Text(str(value))


def _table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    return table


def _run_view(run: dict[str, object], note: str | None = None) -> RenderableType:
    header = Text(f"run {run['workflow_id']}: {run['status']}")
    parts: list[RenderableType] = [header]
    if run.get("error"):
        parts.append(Text(f"error: {run['error']}"))
    elif run.get("output") is not None:
        parts.append(Text(f"output: {run['output']}"))
    steps = run["steps"]
    events = run["events"]
    assert isinstance(steps, list)
    assert isinstance(events, list)
    step_columns = (
        "step_id",
        "kind",
        "state",
        "generation",
        "reused",
        "attempts",
        "started_at",
        "ended_at",
        "result",
        "error",
    )
    parts.append(_table("steps", step_columns, [[s[c] for c in step_columns] for s in steps]))
    event_columns = (
        "step_id",
        "listener",
        "args",
        "state",
        "generation",
        "reused",
        "waiting_at",
        "checkpointed_at",
        "committed_at",
        "payload",
    )
    parts.append(_table("events", event_columns, [[e[c] for c in event_columns] for e in events]))
    if note:
        parts.append(Text(note))
    return Group(*parts)


def _cli_words(message: str, args: argparse.Namespace) -> str:
    """An evkit message with its Python advice put as the evkit commands that do the same."""
    storage = f" --storage {args.storage}" if args.storage else ""
    message = re.sub(
        r"workflow\.resume\((['\"])(.+?)\1\)", lambda m: f"`evkit resume {m.group(2)}{storage}`", message
    )
    message = message.replace("workflow.init(storage=...)", "--storage PATH")
    return message.replace("workflow.list_all()", f"`evkit list{storage}`")


# ---------------------------------------------------------------------- read commands


def _stored_status(status: object) -> str:
    # A read-only open succeeds only while no process writes the store, so a run the
    # store says is running has no live scheduler: it is RESUMABLE, as list_all() says.
    if status in (WorkflowStatus.RUNNING.value, WorkflowStatus.WAITING.value):
        return WorkflowStatus.RESUMABLE.value
    return str(status)


def _cmd_list(args: argparse.Namespace, storage: str) -> int:
    owner = _owner(storage)
    if owner is not None:
        runs: list[dict[str, object]] = owner.call("runs_overview")
    else:
        with _reading(args, storage) as con:
            runs = _store_read(storage, lambda: list_runs(con))
        for run in runs:
            run["status"] = _stored_status(run["status"])
    if args.json:
        _print_json({"storage": storage, "runs": runs})
        return 0
    columns = ("workflow_id", "status", "created_at", "updated_at", "ended_at")
    _console().print(_table(None, columns, [[r[c] for c in columns] for r in runs]))
    return 0


def _store_read(storage: str, read: Callable[[], _T]) -> _T:
    try:
        return read()
    except duckdb.Error as exc:
        raise translate(exc, storage, "reading the store") from exc


def _overview(args: argparse.Namespace, storage: str, con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    run = _store_read(storage, lambda: run_overview(con, args.workflow_id))
    if run is None:
        raise _not_in_store(args, storage)
    run["status"] = _stored_status(run["status"])
    return run


def _not_in_store(args: argparse.Namespace, storage: str) -> CliError:
    return CliError(
        f"run {args.workflow_id!r} is not in store {storage!r}. List the runs with "
        f"`evkit list{_storage_flag(args, storage)}`."
    )


def _read_run(args: argparse.Namespace, storage: str) -> dict[str, object]:
    """The run's row, steps and events: from the store's owner if one is live, else the file."""
    owner = _owner(storage)
    if owner is not None:
        run: dict[str, object] | None = owner.call("run_detail", workflow_id=args.workflow_id)
        if run is None:
            raise _not_in_store(args, storage)
        return run
    with _reading(args, storage) as con:
        return _overview(args, storage, con)


def _cmd_status(args: argparse.Namespace, storage: str) -> int:
    run = _read_run(args, storage)
    if args.json:
        _print_json({"storage": storage, **run})
    else:
        _console().print(_run_view(run))
    return 0


def _sql_through_owner(owner: ControlClient, query: str) -> tuple[list[str], list[tuple[object, ...]]]:
    try:
        table = owner.sql_arrow(query)
    except ReadOnlyQueryError as exc:
        found = str(exc).split("got ", 1)[-1].split(".", 1)[0]
        raise CliError(
            f"evkit sql only reads: the query must be one SELECT statement, got {found}; the store "
            "was not changed. Query the views workflows, steps, events and inbox_events; change "
            "runs with `evkit send` / `evkit cancel`."
        ) from None
    except OwnerUnreachableError:
        raise
    except StoreError as exc:
        raise CliError(str(exc)) from None
    columns = list(table.column_names)
    rows = list(zip(*(column.to_pylist() for column in table.columns), strict=True))
    return columns, rows


def _cmd_sql(args: argparse.Namespace, storage: str) -> int:
    owner = _owner(storage)
    if owner is not None:
        columns, rows = _sql_through_owner(owner, args.query)
        return _print_rows(args, columns, rows)
    with _reading(args, storage) as con:
        try:
            result = con.execute(args.query)
            columns = [d[0] for d in result.description or ()]
            rows = result.fetchall() if result.description else []
        except duckdb.Error as exc:
            text = str(exc)
            if "read-only mode" in text:
                raise CliError(
                    "evkit sql only reads: the query would change the store, which was not "
                    f"changed (DuckDB: {text.splitlines()[0]}). Query the views workflows, "
                    "steps, events and inbox_events; a program that runs workflows changes "
                    "the store through evkit (or use `evkit send` / `evkit cancel`)."
                ) from None
            raise CliError(f"the query failed: {text}") from None
    return _print_rows(args, columns, rows)


def _print_rows(args: argparse.Namespace, columns: list[str], rows: Sequence[Sequence[object]]) -> int:
    if args.json:
        _print_json({"columns": columns, "rows": rows})
        return 0
    console = _console()
    console.print(_table(None, columns, rows[:_SQL_TABLE_ROWS]))
    if len(rows) > _SQL_TABLE_ROWS:
        console.print(Text(f"({len(rows)} rows; the first {_SQL_TABLE_ROWS} shown; --json gives all)"))
    return 0


def _cmd_watch(args: argparse.Namespace, storage: str) -> int:
    console = _console()
    run: dict[str, object] | None = None
    shown: str | None = None
    with contextlib.ExitStack() as stack:
        live: Live | None = None
        if console.is_terminal and not args.json:
            live = stack.enter_context(Live(console=console, auto_refresh=False))
        while True:
            note = None
            try:
                run = _read_run(args, storage)
            except _StoreHeld:
                if run is None:
                    raise  # nothing read yet to show: say who holds the store
                note = (
                    f"(store {storage!r} is held by another process, probably the one running "
                    "the run: showing what was read last)"
                )
            assert run is not None
            final = run["status"] in _FINAL
            if not args.json:
                view = _run_view(run, note)
                if live is not None:
                    live.update(view, refresh=True)
                else:
                    # Not a terminal: print each new state once, for logs and programs.
                    key = json.dumps(_jsonable(run), sort_keys=True)
                    if key != shown:
                        shown = key
                        console.print(view)
            if final:
                break
            time.sleep(WATCH_REFRESH_SECONDS)
    if args.json:
        _print_json({"storage": storage, **run})
    return 0


# ---------------------------------------------------------------------- write commands


def _cmd_send(args: argparse.Namespace, storage: str) -> int:
    if not args.key or len(args.key) > MAX_EVENT_KEY_CHARS:
        raise CliError(
            f"KEY must have 1 to {MAX_EVENT_KEY_CHARS} characters, got {len(args.key)}: it is the "
            "`key` the run's ManualListener waits on (`evkit status ID` shows its args).",
            exit_status=2,
        )
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"the payload {args.payload!r} is not JSON ({exc}). Quote it for the shell, e.g. "
            f"evkit send {args.workflow_id} {args.key} '{{\"amount\": 3}}' (a string is '\"text\"').",
            exit_status=2,
        ) from None
    owner = _owner(storage)
    if owner is not None:
        event_id = _known_run(
            args,
            storage,
            lambda: owner.call(
                "send_event",
                workflow_id=args.workflow_id,
                key=args.key,
                payload=payload,
                event_id=new_event_id(),
            ),
        )
        return _sent(args, storage, event_id, owner.call("get_status", workflow_id=args.workflow_id))
    held = (
        "it runs workflows on this store, so it must receive the event itself. Stop it, or "
        "send the event to its HTTP inbox (workflow.serve_events() in that process, then "
        f"POST the JSON to /events/{args.workflow_id}/{args.key})."
    )
    with _writing(args, storage, held):
        event_id = _known_run(args, storage, lambda: api.send_event(args.workflow_id, args.key, payload))
        status = api.get_status(args.workflow_id).value
    return _sent(args, storage, event_id, status)


def _sent(args: argparse.Namespace, storage: str, event_id: str, status: str) -> int:
    if args.json:
        _print_json(
            {"workflow_id": args.workflow_id, "key": args.key, "event_id": event_id, "status": status}
        )
        return 0
    print(f"sent event {event_id} to run {args.workflow_id} (key {args.key}); the run is {status}.")
    if status == WorkflowStatus.RESUMABLE.value:
        print(
            "Nothing runs it now: it receives the event when it resumes "
            f"(evkit resume {args.workflow_id}{_storage_flag(args, storage)})."
        )
    return 0


def _known_run(args: argparse.Namespace, storage: str, call: Callable[[], _T]) -> _T:
    try:
        return call()
    except WorkflowNotFoundError:
        raise CliError(
            f"run {args.workflow_id!r} is not in store {storage!r}. List the runs with "
            f"`evkit list{_storage_flag(args, storage)}`."
        ) from None


def _cmd_cancel(args: argparse.Namespace, storage: str) -> int:
    owner = _owner(storage)
    if owner is not None:
        status = _known_run(args, storage, lambda: owner.call("cancel", workflow_id=args.workflow_id))
        return _cancelled(args, status)
    held = (
        "it runs workflows on this store. Cancel the run from that process with "
        f"workflow.cancel({args.workflow_id!r}), or stop that process and run this again."
    )
    with _writing(args, storage, held):
        _known_run(args, storage, lambda: api.cancel(args.workflow_id))
        status = api.get_status(args.workflow_id).value
    return _cancelled(args, status)


def _cancelled(args: argparse.Namespace, status: str) -> int:
    if args.json:
        _print_json({"workflow_id": args.workflow_id, "status": status})
    else:
        print(f"run {args.workflow_id}: {status}")
    return 0


def _cmd_resume(args: argparse.Namespace, storage: str) -> int:
    owner = _owner(storage)
    if owner is not None:
        raise _owned_elsewhere(args, storage, owner)
    held = (
        "it may be running this run already. Stop it, then run "
        f"`evkit resume {args.workflow_id}{_storage_flag(args, storage)}` again."
    )
    with _writing(args, storage, held):
        try:
            output = _run_until_done(args, storage)
        except KeyboardInterrupt:
            raise CliError(
                f"interrupted: run {args.workflow_id} stopped here and is RESUMABLE; continue it "
                f"with `evkit resume {args.workflow_id}{_storage_flag(args, storage)}`.",
                exit_status=130,
            ) from None
        status = api.get_status(args.workflow_id).value
    if args.json:
        _print_json({"workflow_id": args.workflow_id, "status": status, "output": output})
    else:
        print(repr(output))
    return 0


def _owned_elsewhere(args: argparse.Namespace, storage: str, owner: ControlClient) -> CliError:
    flag = _storage_flag(args, storage)
    status = _known_run(args, storage, lambda: owner.call("get_status", workflow_id=args.workflow_id))
    if status in (WorkflowStatus.RUNNING.value, WorkflowStatus.WAITING.value):
        now = (
            f"It runs run {args.workflow_id} now ({status}): watch it with "
            f"`evkit watch {args.workflow_id}{flag}`"
            + (
                f", and send a waiting step its event with `evkit send {args.workflow_id} KEY "
                f"'<json>'{flag}` (`evkit status {args.workflow_id}{flag}` shows the keys)"
                if status == WorkflowStatus.WAITING.value
                else ""
            )
            + "."
        )
    else:
        now = (
            f"Run {args.workflow_id} is {status} there; resume it in that process "
            f"(workflow.resume({args.workflow_id!r})), or stop that process and run "
            f"`evkit resume {args.workflow_id}{flag}` again."
        )
    return CliError(
        f"store {storage!r} is owned by {owner.owner.describe()}, which runs workflows on it; "
        f"a run resumes only in the process that owns its store. {now}"
    )


def _run_until_done(args: argparse.Namespace, storage: str) -> object:
    handle = _known_run(args, storage, lambda: api.resume_async(args.workflow_id))
    changed = threading.Event()
    unsubscribe = handle.subscribe(changed.set)
    announced: set[str] = set()
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: _suppress_evkit_errors(unsubscribe))
        show = _snapshot_shower(stack) if args.watch else None
        while True:
            changed.clear()
            done = handle.done()
            snapshot = handle.snapshot()
            if show is not None:
                show(snapshot)
            if done:
                break
            if snapshot.status is WorkflowStatus.WAITING:
                _announce_waits(args, storage, snapshot, announced)
            # The run's changes wake this; the timeout only bounds how late its end is seen.
            changed.wait(WATCH_REFRESH_SECONDS)
    return handle.result()


def _suppress_evkit_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(EvkitError):  # the runtime may be closing after Ctrl-C
        call()


def _snapshot_shower(stack: contextlib.ExitStack) -> Callable[[RunSnapshot], None]:
    """Show each new snapshot of the run this process runs, on stderr (stdout is its output)."""
    console = _console(stderr=True)
    live = stack.enter_context(Live(console=console, auto_refresh=False)) if console.is_terminal else None
    shown = -1

    def show(snapshot: RunSnapshot) -> None:
        nonlocal shown
        if snapshot.version == shown:
            return
        shown = snapshot.version
        view = _snapshot_view(snapshot)
        if live is not None:
            live.update(view, refresh=True)
        else:
            console.print(view)

    return show


def _snapshot_view(snapshot: RunSnapshot) -> RenderableType:
    columns = ("step_id", "kind", "state", "attempts", "listener", "waits for", "error")
    rows = []
    for step in snapshot.steps:
        waits_for: str | None
        if step.inbox_key is not None:
            waits_for = f"key {step.inbox_key}"
        elif step.deadline is not None:
            waits_for = f"{step.deadline.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
        else:
            waits_for = step.args_text if step.kind == "event" else None
        rows.append(
            [step.step_id, step.kind, step.state, step.attempts, step.listener, waits_for, step.error]
        )
    header = Text(f"run {snapshot.workflow_id}: {snapshot.status.value}")
    return Group(header, _table(None, columns, rows))


def _announce_waits(
    args: argparse.Namespace, storage: str, snapshot: RunSnapshot, announced: set[str]
) -> None:
    new = [snapshot.step(step_id) for step_id in snapshot.waiting_on if step_id not in announced]
    if not new:
        return
    lines = [f"evkit resume: run {snapshot.workflow_id} is WAITING:"]
    for step in new:
        announced.add(step.step_id)
        if step.inbox_key is not None:
            lines.append(
                f"  step {step.step_id!r} waits for an event with key {step.inbox_key!r} "
                f"({step.listener}); send it with: evkit send {snapshot.workflow_id} "
                f"{step.inbox_key} '<json>'{_storage_flag(args, storage)}"
            )
        elif step.deadline is not None:
            until = step.deadline.astimezone(dt.UTC)
            lines.append(
                f"  step {step.step_id!r} waits until {until:%Y-%m-%d %H:%M:%S} UTC ({step.listener})"
            )
        else:
            lines.append(f"  step {step.step_id!r} waits on {step.listener} {step.args_text or ''}".rstrip())
    lines.append("  (this command keeps running until the run ends; Ctrl-C leaves it RESUMABLE)")
    print("\n".join(lines), file=sys.stderr, flush=True)


_COMMANDS: dict[str, Callable[[argparse.Namespace, str], int]] = {
    "list": _cmd_list,
    "status": _cmd_status,
    "sql": _cmd_sql,
    "send": _cmd_send,
    "cancel": _cmd_cancel,
    "resume": _cmd_resume,
    "watch": _cmd_watch,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
