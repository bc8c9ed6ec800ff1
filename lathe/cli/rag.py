"""``lathe rag``: ingest documents, ask questions with citations, evaluate retrieval.

    lathe rag ingest docs/ https://example.org/page.html --collection docs
    lathe rag ask "How do I join two paths?" --collection docs
    lathe rag ask "Does it work on Windows?" --session mine   # follow-ups see earlier turns
    lathe rag retrieve "os.path.join" --top-k 5 --json
    lathe rag eval --questions .lathe/data/rag/questions.jsonl --collection docs
    lathe rag collections | documents COLLECTION | delete COLLECTION DOC_ID

Everything goes through the gateway with the CLI's key, like any client. URLs are
fetched here and uploaded as files: the service itself never fetches a URL.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from lathe.cli.gateway_client import GatewayClient, GatewayUnreachableError, error_from_wire
from lathe.cli.output import console, err_console, print_json, settings
from lathe.cli.rag_session import load_turns, new_turns, save_turns, session_path
from lathe.errors import InvalidRequestError, LatheError

app = typer.Typer(help="Retrieval-augmented generation: ingest, ask, evaluate.", no_args_is_help=True)

SUFFIXES = {".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".rst", ".txt", ".text"}
URL_OPT = typer.Option(None, "--url", help="Gateway base URL (default: the local gateway).")
KEY_OPT = typer.Option(None, "--api-key", envvar="LATHE_API_KEY", help="Gateway key (default: the CLI's own).")
COLLECTION_OPT = typer.Option("docs", "--collection", "-c", help="Collection name.")


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files as given, folders walked for supported types (sorted), URLs kept."""
    out: list[str] = []
    for item in inputs:
        if item.startswith(("http://", "https://")):
            out.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _supported(p))
            out += [str(p) for p in found]
        elif path.is_file():
            out.append(str(path))
        else:
            raise InvalidRequestError(f"{item}: no such file or folder", param="paths")
    return out


def _supported(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES or path.name.endswith(".rst.txt")


def _read(item: str) -> tuple[str, bytes, str]:
    """(file name, bytes, source) for a path or a URL."""
    if item.startswith(("http://", "https://")):
        import httpx

        response = httpx.get(item, timeout=60, follow_redirects=True)
        response.raise_for_status()
        name = item.rstrip("/").rsplit("/", 1)[-1] or "index.html"
        if "." not in name:
            kind = response.headers.get("content-type", "")
            name += ".pdf" if "pdf" in kind else ".html" if "html" in kind else ".txt"
        return name, response.content, item
    path = Path(item).resolve()
    return path.name, path.read_bytes(), str(path)


@app.command("ingest")
def ingest(
    paths: list[str] = typer.Argument(..., help="Files, folders (walked) or http(s) URLs."),
    collection: str = COLLECTION_OPT,
    json_output: bool = typer.Option(False, "--json", help="Print every document's outcome as JSON."),
    url: str | None = URL_OPT,
    api_key: str | None = KEY_OPT,
) -> None:
    """Ingest documents; unchanged ones are skipped, changed ones replaced."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    items = expand_inputs(paths)
    if not items:
        raise InvalidRequestError("no supported documents found", param="paths")
    client = GatewayClient(url, api_key)
    outcomes: list[dict[str, Any]] = []
    chunks = 0
    started = time.monotonic()
    progress = Progress(
        TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), console=err_console, disable=json_output,
    )  # fmt: skip
    with progress:
        task = progress.add_task("ingest", total=len(items), rate="")
        for item in items:
            try:
                name, data, source = _read(item)
                result = client.call(
                    "POST", f"/v1/rag/collections/{collection}/documents",
                    files=[("files", (name, data))], data={"sources": json.dumps([source])},
                )  # fmt: skip
                outcomes += result["documents"]
                chunks += result["chunks_written"]
            except (LatheError, OSError) as exc:
                message = exc.one_line() if isinstance(exc, LatheError) else f"{type(exc).__name__}: {exc}"
                if isinstance(exc, GatewayUnreachableError):
                    raise
                outcomes.append({"id": item, "source": item, "status": "failed", "chunks": 0, "error": message})
            except Exception as exc:  # a URL that cannot be fetched: report it, go on
                outcomes.append({"id": item, "source": item, "status": "failed", "chunks": 0, "error": str(exc)})
            elapsed = max(time.monotonic() - started, 1e-6)
            done = progress.tasks[0].completed + 1
            progress.update(task, advance=1, rate=f"{done / elapsed:.1f} docs/s · {chunks / elapsed:.1f} chunks/s")
    elapsed = time.monotonic() - started
    counts = {s: sum(o["status"] == s for o in outcomes) for s in ("added", "updated", "unchanged", "failed")}
    summary = {"collection": collection, "documents": outcomes, "chunks_written": chunks, "seconds": round(elapsed, 2),
               **counts}  # fmt: skip
    if json_output:
        print_json(summary)
    else:
        for o in outcomes:
            if o["status"] == "failed":
                message = o["error"]["message"] if isinstance(o.get("error"), dict) else o.get("error")
                err_console.print(f"[red]failed[/] {o['source']}: {message}", highlight=False)
        console.print(
            f"[bold]{collection}[/]: {counts['added']} added, {counts['updated']} updated, "
            f"{counts['unchanged']} unchanged, {counts['failed']} failed · {chunks} chunks written in {elapsed:.1f} s"
        )
    if counts["failed"]:
        raise typer.Exit(1)


@app.command("ask")
def ask(
    question: str = typer.Argument(..., help="The question."),
    collection: str = COLLECTION_OPT,
    top_k: int = typer.Option(4, "--top-k", min=1, max=50, help="Chunks to answer from."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print the answer as it is generated."),
    json_output: bool = typer.Option(False, "--json", help="Print the answer, citations and sources as JSON."),
    session: str | None = typer.Option(
        None, "--session", "-s", help="Keep the conversation under this name: follow-ups see earlier turns."
    ),
    forget: bool = typer.Option(False, "--forget", help="Start the --session over."),
    expand: int | None = typer.Option(
        None, "--expand", min=0, max=4, help="Also search N rephrasings of the question by the model, fused."
    ),
    url: str | None = URL_OPT,
    api_key: str | None = KEY_OPT,
) -> None:
    """Answer a question from a collection, with numbered citations."""
    if not question.strip():
        raise InvalidRequestError("the question is empty", param="question")
    if forget and session is None:
        raise InvalidRequestError("--forget needs --session", param="forget")
    path = session_path(settings().home, session) if session else None
    turns = [] if path is None or forget else load_turns(path)
    client = GatewayClient(url, api_key)
    body = {"query": question, "collection": collection, "top_k": top_k, **({"messages": turns} if turns else {})}
    if expand is not None:
        body["expand"] = expand
    if json_output or not stream:
        result = client.call("POST", "/v1/rag/query", json=body)
        if not json_output:
            _print_rewrite(result)
            console.print(result["answer"], highlight=False, markup=False)
    else:
        result = _stream_answer(client, body)
    if path is not None and result.get("answer"):
        save_turns(path, [*turns, *new_turns(question, result["answer"])])
    if json_output:
        print_json(result)
        return
    _print_citations(result)


def _print_rewrite(data: dict[str, Any]) -> None:
    """The standalone question a follow-up was searched as, and the turns left out."""
    conversation = data.get("conversation") or {}
    if conversation.get("method") in ("model", "history"):
        err_console.print(f"[dim]searched as: {escape(conversation['rewritten_query'])}[/]", highlight=False)
    if conversation.get("dropped_turns"):
        err_console.print(f"[dim]left out the {len(conversation['dropped_turns'])} oldest turn(s)[/]")
    expansions = data.get("expansions") or (data.get("info") or {}).get("expansions")
    if expansions:
        err_console.print(f"[dim]also searched as: {escape(' | '.join(expansions))}[/]", highlight=False)


def _stream_answer(client: GatewayClient, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with client.stream("POST", "/v1/rag/query", json={**body, "stream": True}) as response:
        event = "message"
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and line.strip() != "data: [DONE]":
                data = json.loads(line[5:])
                if event == "sources":
                    _print_rewrite(data)
                elif event == "delta":
                    console.print(data["content"], end="", highlight=False, markup=False)
                elif event == "answer":
                    result = data
                elif event == "error":
                    # An error inside a stream that had begun: the service failed upstream.
                    raise error_from_wire(502, data)
    console.print()
    return result


def _where(hit: dict[str, Any]) -> str:
    """Title and section, without the title twice when the section path starts with it."""
    title, section = hit.get("title") or "", hit.get("section") or ""
    if section.startswith(title):
        return section or title
    return " › ".join(p for p in (title, section) if p)


def _print_citations(result: dict[str, Any]) -> None:
    for c in result.get("citations") or []:
        where = _where(c)
        page = f" p.{c['page']}" if c.get("page") else ""
        console.print(
            f"  [cyan][{c['index']}][/] {c['source']}{page} — {where} (score {c['score']:.3f})", highlight=False
        )


@app.command("retrieve")
def retrieve(
    query: str = typer.Argument(..., help="What to look for."),
    collection: str = COLLECTION_OPT,
    top_k: int = typer.Option(5, "--top-k", min=1, max=50),
    mode: str = typer.Option("hybrid", "--mode", help="dense, sparse or hybrid."),
    json_output: bool = typer.Option(False, "--json"),
    url: str | None = URL_OPT,
    api_key: str | None = KEY_OPT,
) -> None:
    """The ranked chunks for a query, without generation."""
    client = GatewayClient(url, api_key)
    result = client.call("POST", "/v1/rag/retrieve", json={"query": query, "collection": collection, "top_k": top_k,
                                                            "mode": mode})  # fmt: skip
    if json_output:
        print_json(result)
        return
    for rank, hit in enumerate(result["data"], start=1):
        where = _where(hit)
        console.print(f"[bold]{rank}.[/] {hit['source']} — {where} [dim](score {hit['score']:.4f})[/]", highlight=False)
        console.print(f"   {hit['text'][:200]}", highlight=False, markup=False)


@app.command("collections")
def collections(json_output: bool = typer.Option(False, "--json"), url: str | None = URL_OPT,
                api_key: str | None = KEY_OPT) -> None:  # fmt: skip
    """List collections and their chunk counts."""
    result = GatewayClient(url, api_key).call("GET", "/v1/rag/collections")
    if json_output:
        print_json(result)
        return
    for c in result["data"]:
        console.print(f"{c['name']}: {c['chunks']} chunks")


@app.command("documents")
def documents(collection: str = typer.Argument("docs"), json_output: bool = typer.Option(False, "--json"),
              url: str | None = URL_OPT, api_key: str | None = KEY_OPT) -> None:  # fmt: skip
    """List a collection's documents."""
    result = GatewayClient(url, api_key).call("GET", f"/v1/rag/collections/{collection}/documents")
    if json_output:
        print_json(result)
        return
    for d in result["data"]:
        console.print(f"{d['id']}  ({d['chunks']} chunks)", highlight=False)


@app.command("delete")
def delete(collection: str = typer.Argument(...), doc_id: str = typer.Argument(...), url: str | None = URL_OPT,
           api_key: str | None = KEY_OPT) -> None:  # fmt: skip
    """Remove one document's chunks from a collection."""
    result = GatewayClient(url, api_key).call("DELETE", f"/v1/rag/collections/{collection}/documents/{doc_id}")
    console.print(f"removed {result['chunks_removed']} chunks of {doc_id}", highlight=False)


@app.command("eval")
def evaluate(
    questions: Path = typer.Option(..., "--questions", exists=True, dir_okay=False, help="JSONL question set."),
    collection: str = COLLECTION_OPT,
    k: int = typer.Option(5, "--k", min=1, max=50, help="hit@k cut-off."),
    mode: str = typer.Option("hybrid", "--mode", help="dense, sparse or hybrid."),
    answers: int = typer.Option(10, "--answers", min=0, help="Questions also answered (for faithfulness)."),
    judge: str | None = typer.Option(
        None, "--judge", help="A served model that grades the answers: faithfulness and relevance."
    ),
    log: bool = typer.Option(True, "--log/--no-log", help="Log the figures to MLflow (lathe-rag-eval)."),
    json_output: bool = typer.Option(False, "--json"),
    url: str | None = URL_OPT,
    api_key: str | None = KEY_OPT,
) -> None:
    """hit@k and MRR of retrieval, and the faithfulness and relevance of answers, on a question set."""
    from lathe.rag_eval import evaluate_questions, load_questions
    from lathe.rag_judge import RagJudge

    items = load_questions(questions)
    client = GatewayClient(url, api_key)

    def ask_judge(messages: list[dict[str, str]], choices: list[str]) -> str:
        body = {"model": judge, "messages": messages, "max_tokens": 4, "temperature": 0.0,
                "structured_outputs": {"choice": choices}}  # fmt: skip
        reply = client.call("POST", "/v1/chat/completions", json=body)
        return ((reply.get("choices") or [{}])[0].get("message") or {}).get("content") or ""

    def retrieve_fn(question: str) -> list[dict[str, Any]]:
        body = {"query": question, "collection": collection, "top_k": k, "mode": mode}
        return client.call("POST", "/v1/rag/retrieve", json=body)["data"]

    def answer_fn(question: str) -> dict[str, Any]:
        return client.call("POST", "/v1/rag/query", json={"query": question, "collection": collection})

    grader = RagJudge(ask_judge) if judge else None
    report = evaluate_questions(items, retrieve_fn, answer_fn, k=k, answers=answers, judge=grader)
    report.update(collection=collection, mode=mode)
    if log:
        report["mlflow_run_id"] = _log_eval(report, questions, judge)
    if json_output:
        print_json(report)
        return
    console.print(
        f"[bold]{collection}[/] ({mode}, {report['questions']} questions): hit@{k} {report['hit_at_k']:.3f} · "
        f"MRR {report['mrr']:.3f} · faithfulness {report['faithfulness']} · citations supported "
        f"{report['citation_support']} over {report['answered']} answers"
    )
    if report["judge"]:
        graded = report["judge"]
        console.print(
            f"  judge {judge}: faithfulness {graded['faithfulness']} · answer relevance {graded['answer_relevance']}"
        )
        for item in graded["unsupported"][:5]:
            console.print(f"  [yellow]unsupported[/] {item['claim']}  ({item['question']})", highlight=False)
    for kind, part in report["by_kind"].items():
        figures = f"hit@{k} {part['hit_at_k']:.3f} · MRR {part['mrr']:.3f}"
        console.print(f"  {kind}: {figures} ({part['questions']} questions)")
    for miss in report["misses"][:10]:
        console.print(f"  [yellow]miss[/] {miss['question']}  (expected {miss['expected']})", highlight=False)


def _log_eval(report: dict[str, Any], questions: Path, judge: str | None) -> str | None:
    """The report as an MLflow run; a tracking server that cannot be reached is a warning, not a lost report."""
    from lathe.rag_eval import log_report
    from lathe.registry import ModelRegistry

    params = {"collection": report["collection"], "mode": report["mode"], "k": report["k"],
              "questions": questions.name, "judge": judge or "none"}  # fmt: skip
    target = ModelRegistry(settings().mlflow.uri, timeout_s=settings().mlflow.request_timeout_s)
    try:
        target.ping()
        return log_report(report, target.client, params)
    except Exception as exc:  # the figures are printed all the same
        err_console.print(f"[yellow]not logged to MLflow: {exc}[/]", highlight=False)
        return None
