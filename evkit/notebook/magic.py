"""The ``%evkit_sql`` line magic and ``%%evkit_sql`` cell magic (``%load_ext evkit``).

They run SQL on the store with ``evkit.sql`` and return a pandas DataFrame (or, without
pandas, a small HTML table object). Bad SQL raises IPython's ``UsageError``, which the
notebook shows as one line (``UsageError: ...``) with no traceback.
"""

from __future__ import annotations

import importlib.util
from html import escape

import duckdb
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from evkit import api
from evkit.errors import EvkitError
from evkit.notebook.tracebacks import install_short_tracebacks

_MAX_HTML_ROWS = 200


class SqlResult:
    """A query result shown as an HTML table (used when pandas is not installed).

    Attributes:
        columns: Column names.
        rows: The rows, as tuples.
    """

    def __init__(self, columns: list[str], rows: list[tuple[object, ...]]) -> None:
        self.columns = columns
        self.rows = rows

    def __repr__(self) -> str:
        return f"<evkit SQL result: {len(self.rows)} rows x {len(self.columns)} columns>"

    def __len__(self) -> int:
        return len(self.rows)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>"
            for row in self.rows[:_MAX_HTML_ROWS]
        )
        more = (
            f"<p>… {len(self.rows) - _MAX_HTML_ROWS} more rows</p>" if len(self.rows) > _MAX_HTML_ROWS else ""
        )
        return f'<table class="evkit-sql"><tr>{head}</tr>{body}</table>{more}'


def run_sql(query: str) -> object:
    """Run ``query`` on the store and return a DataFrame, or a :class:`SqlResult`.

    Raises:
        UsageError: The query is empty or failed (DuckDB's message, on one line).
    """
    query = query.strip()
    if not query:
        raise UsageError("%evkit_sql needs a query, e.g. `%evkit_sql SELECT * FROM workflows`.")
    try:
        relation = api.sql(query)
        if importlib.util.find_spec("pandas") is None:
            return SqlResult(list(relation.columns), relation.fetchall())
        return relation.df()
    # Binding errors come wrapped as StoreError; errors while the query runs (a failed
    # cast, a division by zero) come from DuckDB as it fetches.
    except (EvkitError, duckdb.Error) as exc:
        raise UsageError(f"evkit_sql: {_first_lines(str(exc))}") from None


def _first_lines(text: str, limit: int = 3) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:limit])


@magics_class
class EvkitMagics(Magics):
    """``%evkit_sql`` / ``%%evkit_sql``: SQL on the evkit store."""

    @line_cell_magic
    def evkit_sql(self, line: str, cell: str | None = None) -> object:
        """Run SQL on the evkit store (views: workflows, steps, events, inbox_events).

        ``%evkit_sql SELECT ...`` runs the rest of the line; ``%%evkit_sql`` runs the
        whole cell. The result is a pandas DataFrame (an HTML table without pandas).
        """
        return run_sql(line if cell is None else f"{line}\n{cell}")


def load_ipython_extension(ipython: object) -> None:
    """Register the magics and short tracebacks for evkit errors (``%load_ext evkit``)."""
    ipython.register_magics(EvkitMagics)  # type: ignore[attr-defined]
    install_short_tracebacks(ipython)
