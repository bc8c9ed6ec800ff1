import asyncio
import sqlite3
import sys
import textwrap

import httpx
import pytest

from services.agent.tools.base import ToolContext, ToolError
from services.agent.tools.calculator import evaluate
from services.agent.tools.http_get import HttpGet, host_allowed
from services.agent.tools.rag_search import RagSearch
from services.agent.tools.registry import ENTRY_POINT_GROUP, allowed_tools, load_tools, parse_allowlist
from services.agent.tools.sql_query import SqlQuery, run_query

from .conftest import ScriptedGateway


def _run(tool, settings, transport=None, **args):
    async def go():
        async with httpx.AsyncClient(transport=transport or ScriptedGateway()) as http:
            ctx = ToolContext(settings, http, authorization="Bearer lk-caller", request_id="r1")
            return await tool.run(tool.Input.model_validate(args), ctx)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("expression", "value"),
    [("6 * 7", 42), ("(3 + 4) * 2", 14), ("2 ** 10", 1024), ("-7 // 2", -4), ("10 % 4", 2), ("1 / 4", 0.25)],
)
def test_calculator_does_arithmetic(expression, value):
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("__import__('os').system('id')", "function call"),
        ("x + 1", "a name"),
        ("(1).__class__", "attribute access"),
        ("'a' * 3", "only numbers"),
        ("9 ** 9 ** 9", "exponent too large"),
        ("10 ** 1000", "exponent too large"),
        ("1 / 0", "division by zero"),
        ("2 ^ 8", "write \\*\\*"),
        ("[1, 2][0]", "not allowed"),
        ("1 if True else 2", "not allowed"),
        ("(-8) ** 0.5", "not a real number"),
    ],
)
def test_calculator_refuses_what_is_not_arithmetic(expression, why):
    with pytest.raises(ToolError, match=why):
        evaluate(expression)


@pytest.fixture
def shop_db(tmp_path):
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    conn.executemany("INSERT INTO items (name, price) VALUES (?, ?)", [(f"item{i}", i * 1.5) for i in range(30)])
    conn.commit()
    conn.close()
    return path


def _count(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]
    finally:
        conn.close()


def test_sql_query_reads_and_applies_the_row_limit(agent_settings, shop_db):
    settings = agent_settings(sql_database=shop_db, sql_row_limit=5)
    text = _run(SqlQuery(settings), settings, query="SELECT id, name FROM items ORDER BY id")
    lines = text.splitlines()
    assert lines[0] == "id | name"
    assert lines[1:6] == [f"{i + 1} | item{i}" for i in range(5)]
    assert "only the first 5 rows" in lines[-1]
    assert len(lines) == 7


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO items (name, price) VALUES ('x', 1)",
        "UPDATE items SET price = 0",
        "DELETE FROM items",
        "DROP TABLE items",
        "ATTACH DATABASE 'other.db' AS other",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA user_version = 7",
        "WITH x AS (SELECT 1) INSERT INTO items (name) SELECT 'y' FROM x",
        "SELECT 1; DROP TABLE items",
    ],
)
def test_sql_query_refuses_writes(agent_settings, shop_db, query):
    settings = agent_settings(sql_database=shop_db)
    with pytest.raises(ToolError):
        _run(SqlQuery(settings), settings, query=query)
    assert _count(shop_db) == 30
    conn = sqlite3.connect(shop_db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()


def test_sql_guards_hold_even_past_the_keyword_check(shop_db):
    # run_query is what SqlQuery calls after its first-word check: the authorizer and
    # the read-only open must refuse a write on their own.
    for query in ("PRAGMA user_version = 7", "WITH x AS (SELECT 1) DELETE FROM items"):
        with pytest.raises(ToolError, match="read-only"):
            run_query(shop_db, query, 10, deadline=float("inf"))
    assert _count(shop_db) == 30
    assert run_query(shop_db, "PRAGMA table_info(items)", 10, float("inf"))[1][0][1] == "id"


def test_sql_query_opens_the_file_read_only(shop_db, monkeypatch):
    opened = []
    real_connect = sqlite3.connect

    def spy(target, *args, **kwargs):
        opened.append((str(target), kwargs.get("uri")))
        return real_connect(target, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spy)
    run_query(shop_db, "SELECT 1", 1, float("inf"))
    assert opened == [(f"{shop_db.as_uri()}?mode=ro", True)]


def test_sql_query_without_a_database_says_which_setting(agent_settings):
    settings = agent_settings()
    with pytest.raises(ToolError, match="LATHE_AGENT_SQL_DATABASE"):
        _run(SqlQuery(settings), settings, query="SELECT 1")


def test_http_get_refuses_hosts_off_the_allowlist(agent_settings):
    gw = ScriptedGateway()
    settings = agent_settings()  # empty allowlist: nothing is fetched
    with pytest.raises(ToolError, match="not allowed"):
        _run(HttpGet(settings), settings, gw, url="https://example.com/")
    settings = agent_settings(http_allowlist="docs.example.com")
    for url in ("https://evil.com/", "https://docs.example.com.evil.com/", "http://user:pw@docs.example.com/"):
        with pytest.raises(ToolError):
            _run(HttpGet(settings), settings, gw, url=url)
    assert gw.web_requests == []


def test_http_get_fetches_an_allowed_host_without_the_callers_key_or_redirects(agent_settings):
    gw = ScriptedGateway()
    gw.web["https://docs.example.com/page"] = httpx.Response(
        200, text="hello docs", headers={"content-type": "text/plain"}
    )
    gw.web["https://docs.example.com/moved"] = httpx.Response(302, headers={"location": "https://evil.com/"})
    settings = agent_settings(http_allowlist='[".example.com"]')
    text = _run(HttpGet(settings), settings, gw, url="https://docs.example.com/page")
    assert text == "HTTP 200 text/plain\nhello docs"
    assert "authorization" not in gw.web_requests[0].headers
    with pytest.raises(ToolError, match="not followed"):
        _run(HttpGet(settings), settings, gw, url="https://docs.example.com/moved")
    assert [str(r.url) for r in gw.web_requests] == ["https://docs.example.com/page", "https://docs.example.com/moved"]
    assert host_allowed("example.com", [".example.com"]) and not host_allowed("badexample.com", [".example.com"])


def test_rag_search_calls_the_gateway_with_the_callers_key(agent_settings):
    gw = ScriptedGateway()
    gw.rag_chunks = [
        {"id": "1", "text": "Quotas are  per key.", "source": "docs/quotas.md", "section": "Limits", "score": 0.9},
        {"id": "2", "text": "x" * 1000, "source": "docs/big.md", "section": None, "page": 3, "score": 0.5},
    ]
    settings = agent_settings(rag_collection="handbook")
    text = _run(RagSearch(settings), settings, gw, query="quotas")
    assert gw.rag_requests == [
        {
            "body": {"query": "quotas", "collection": "handbook", "top_k": 3, "filters": {}},
            "authorization": "Bearer lk-caller",
        }
    ]
    assert text.startswith("[1] docs/quotas.md § Limits\nQuotas are per key.\n[2] docs/big.md p.3\n")
    assert text.endswith("…") and len(text) < 600


def test_allowlist_header_intersects_the_agents_tools(agent_settings):
    tools = load_tools(agent_settings())
    assert parse_allowlist(None) is None and parse_allowlist("*") is None
    assert parse_allowlist("calculator, sql_query") == {"calculator", "sql_query"}
    assert allowed_tools(["calculator", "rag_search"], tools, {"calculator", "sql_query"}) == ["calculator"]
    assert allowed_tools(["*"], tools, None) == ["calculator", "http_get", "rag_search", "sql_query"]
    assert allowed_tools(["calculator"], tools, parse_allowlist("")) == []


def test_entry_point_registry_loads_a_plugin_tool(agent_settings, tmp_path, monkeypatch):
    package = tmp_path / "plugin"
    package.mkdir()
    (package / "lathe_wordcount.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel

            class WordCount:
                name = "word_count"
                description = "Count words."

                class Input(BaseModel):
                    text: str

                def __init__(self, settings):
                    self.settings = settings

                async def run(self, args, ctx):
                    return str(len(args.text.split()))
            """
        )
    )
    dist = package / "lathe_wordcount-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lathe-wordcount\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nword_count = lathe_wordcount:WordCount\ncalculator = lathe_wordcount:WordCount\n"
        "broken = lathe_wordcount:Missing\n"
    )
    monkeypatch.syspath_prepend(str(package))
    settings = agent_settings()
    tools = load_tools(settings)
    assert "word_count" in tools and "broken" not in tools
    assert type(tools["calculator"]).__module__ == "services.agent.tools.calculator"  # built-ins win
    assert _run(tools["word_count"], settings, text="one two three") == "3"
    sys.modules.pop("lathe_wordcount", None)
