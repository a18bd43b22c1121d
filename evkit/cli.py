"""The ``evkit`` command: list runs, show a status, run SQL, resume a run.

Every subcommand takes ``--storage PATH`` (default ``$EVKIT_STORAGE``, else
``evkit.duckdb``). Errors are printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evkit import api
from evkit.errors import EvkitError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evkit", description="Inspect and resume evkit workflows.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage", help="the store file (default: $EVKIT_STORAGE or evkit.duckdb)")
    sub.add_parser("list", parents=[common], help="list every run and its status")
    status = sub.add_parser("status", parents=[common], help="print one run's status")
    status.add_argument("workflow_id")
    sql = sub.add_parser(
        "sql", parents=[common], help="run SQL on the store (views: workflows, steps, events)"
    )
    sql.add_argument("query")
    resume = sub.add_parser("resume", parents=[common], help="resume a run and print its output")
    resume.add_argument("workflow_id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        with api.init(storage=args.storage, loop="thread"):
            if args.command == "list":
                for workflow_id, status in api.list_all():
                    print(f"{workflow_id}\t{status.value}")
            elif args.command == "status":
                print(api.get_status(args.workflow_id).value)
            elif args.command == "sql":
                api.sql(args.query).show(max_width=200)
            else:
                print(repr(api.resume(args.workflow_id)))
    except (EvkitError, TypeError, ValueError) as exc:
        print(f"evkit {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
