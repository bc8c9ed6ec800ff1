"""``sql_query``: one read-only SQL query over the SQLite database in settings.

Three locks, each enough on its own for the common case: the file is opened with
``mode=ro``, ``PRAGMA query_only`` is on, and an authorizer refuses every action but
reading (no writes, ATTACH, or PRAGMAs that set anything). A progress handler stops
a query at its deadline, and at most ``sql_row_limit`` rows come back.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from pydantic import BaseModel, Field

from services.agent.tools.base import BaseTool, ToolContext, ToolError

_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
# PRAGMAs that only describe the schema (their argument is a table or index name).
_READ_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "foreign_key_list"}
MAX_CELL_CHARS = 200


def _authorize(action: int, arg1: str | None, _arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _READ_PRAGMAS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def run_query(path: Path, query: str, row_limit: int, deadline: float) -> tuple[list[str], list[tuple], bool]:
    """Columns, at most ``row_limit`` rows, and whether more rows were left out."""
    if not path.exists():
        raise ToolError(f"database {path.name} does not exist")
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_authorize)
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            cursor = conn.execute(query)
            rows = cursor.fetchmany(row_limit + 1)
        except sqlite3.DatabaseError as exc:
            message = str(exc)
            if "not authorized" in message or "readonly" in message or "read-only" in message:
                raise ToolError("refused: sql_query is read-only (SELECT only)") from None
            if "interrupted" in message:
                raise ToolError("query took too long and was stopped") from None
            raise ToolError(f"SQL error: {message}") from None
        except sqlite3.ProgrammingError as exc:  # e.g. two statements at once
            raise ToolError(f"SQL error: {exc}") from None
        columns = [d[0] for d in cursor.description or []]
        return columns, rows[:row_limit], len(rows) > row_limit
    finally:
        conn.close()


def format_rows(columns: list[str], rows: list[tuple], truncated: bool, row_limit: int) -> str:
    if not columns:
        return "(no result set)"
    lines = [" | ".join(columns)]
    for row in rows:
        lines.append(" | ".join(_cell(v) for v in row))
    if not rows:
        lines.append("(no rows)")
    if truncated:
        lines.append(f"(only the first {row_limit} rows are shown)")
    return "\n".join(lines)


def _cell(value: object) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + "…"


class SqlQuery(BaseTool):
    name = "sql_query"
    description = "Run one read-only SQL SELECT query on the configured SQLite database and get the rows."

    class Input(BaseModel):
        model_config = {"extra": "forbid"}

        query: str = Field(description="One SQL SELECT statement.", min_length=1, max_length=4000)

    async def run(self, args: Input, ctx: ToolContext) -> str:
        path = self.settings.sql_database
        if path is None:
            raise ToolError("no database is configured (LATHE_AGENT_SQL_DATABASE)")
        first = args.query.lstrip().split(None, 1)[0].upper() if args.query.strip() else ""
        if first not in {"SELECT", "WITH", "PRAGMA", "VALUES", "EXPLAIN"}:
            raise ToolError("refused: sql_query is read-only (SELECT only)")
        limit = self.settings.sql_row_limit
        deadline = time.monotonic() + self.settings.timeout_for(self.name)
        columns, rows, truncated = await asyncio.to_thread(run_query, path, args.query, limit, deadline)
        return format_rows(columns, rows, truncated, limit)
