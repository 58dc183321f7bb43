"""The dashboard's Starlette application: pages (Jinja2), page fragments for live updates,
the JSON API under /api/, and, only with actions allowed, retry and cancel.

Pages are rendered on the server; `static/dashboard.js` swaps in fresh fragments every few
seconds and draws the charts (uPlot, vendored in `static/vendor/uplot`) from the JSON API.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from pnas.dashboard import data
from pnas.render import cell_of, duration
from shared.errors import UserError
from shared.settings import Settings

HERE = Path(__file__).resolve().parent
REFRESH_SECONDS = 3  # live pages poll this often: fresh enough to watch, cheap for the database
COOKIE = "pnas_dashboard_token"
# The tab's icon (browsers ask for /favicon.ico): a small SVG, so that no request ends in 404.
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
           b'fill="#1d2330"/><path d="M4 12V4h4a2.5 2.5 0 0 1 0 5H4" fill="none" stroke="#cfe2f3" stroke-width="2"/></svg>')


def _json_default(o: object) -> object:
    return o.isoformat() if isinstance(o, datetime) else str(o)


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_json_default, allow_nan=False).encode()


def _error(status: int, message: str) -> JSON:
    return JSON({"error": message}, status_code=status)


class TokenAuth:
    """Every request needs the token: ``Authorization: Bearer TOKEN``, basic auth with the
    token as password (any user name), or the cookie set by opening any page with ``?token=TOKEN``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    def _ok(self, request: Request) -> bool:
        given = request.cookies.get(COOKIE) or request.query_params.get("token") or ""
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip()).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                given = ""
        return secrets.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not self._ok(request):
            why = "this dashboard needs its token (PNAS_DASHBOARD_TOKEN): Bearer, basic auth password, or ?token="
            headers = {"WWW-Authenticate": 'Basic realm="pnas dashboard"'}
            resp: Response = (JSON({"error": why}, status_code=401, headers=headers) if request.url.path.startswith("/api/")
                              else PlainTextResponse(why, status_code=401, headers=headers))  # fmt: skip
        elif request.query_params.get("token") and request.method == "GET":
            # Trade the token in the address for a cookie, so that it leaves the address bar.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            resp = RedirectResponse(target, status_code=303)
            resp.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        else:
            await self.app(scope, receive, send)
            return
        await resp(scope, receive, send)


@lru_cache(maxsize=512)
def _diagram_svg(cell_json: str, title: str) -> bytes:
    """The cell diagram `pnas export` draws, as SVG (drawing takes tens of ms: cached)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from pnas.diagram import draw_cell

    buf = io.BytesIO()
    draw_cell(cell_of(json.loads(cell_json)), title=title).savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def _fmt(x: Any, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def create_app(store: Any, settings: Settings, *, allow_actions: bool = False, token: str | None = None,
               action_store: Any = None) -> ASGIApp:  # fmt: skip
    """The dashboard over ``store`` (reads). With ``allow_actions``, retry and cancel write
    through ``action_store`` (default: ``store``) exactly as `pnas retry` and `pnas cancel` do; without it the action
    endpoints answer 403. With ``token``, every request must carry it (see `TokenAuth`)."""
    writer = action_store or store
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(num=_fmt, duration=duration)
    templates.env.globals.update(allow_actions=allow_actions, refresh_ms=REFRESH_SECONDS * 1000)

    def page(request: Request, name: str, **ctx: Any) -> Response:
        return templates.TemplateResponse(request, name, ctx)

    def run_id_of(ref: str) -> int:
        r = store.get_run(int(ref) if ref.isdigit() else ref)
        if r is None:
            raise LookupError(f"no run {ref!r}; the runs page lists them")
        return int(r.id)

    # Pages ------------------------------------------------------------------------------
    def runs_page(request: Request) -> Response:
        return page(request, "runs.html", d=data.runs_data(store))

    def run_page(request: Request) -> Response:
        rid = run_id_of(request.path_params["ref"])
        d = data.run_data(store, rid)
        kids = data.children_data(store, rid, data.children_query(dict(request.query_params)))
        return page(request, "run.html", d=d, kids=kids)

    def child_page(request: Request) -> Response:
        return page(request, "child.html", c=data.child_data(store, int(request.path_params["id"])))

    def workers_page(request: Request) -> Response:
        return page(request, "workers.html", w=data.workers_data(store, settings))

    # Fragments for live updates -----------------------------------------------------------
    def runs_part(request: Request) -> Response:
        return page(request, "_runs.html", d=data.runs_data(store))

    def run_part(request: Request) -> Response:
        return page(request, "_run.html", d=data.run_data(store, run_id_of(request.path_params["ref"])))

    def children_part(request: Request) -> Response:
        rid = run_id_of(request.path_params["ref"])
        kids = data.children_data(store, rid, data.children_query(dict(request.query_params)))
        return page(request, "_children.html", d={"run": {"id": rid}}, kids=kids)

    def finals_part(request: Request) -> Response:
        rid = run_id_of(request.path_params["ref"])
        run = store.get_run(rid)
        return page(request, "_finals.html", d={"run": {"id": rid, "name": run.name}, "finals": data.finals_data(store, rid)})

    def child_part(request: Request) -> Response:
        name = "_child_attempts.html" if request.query_params.get("section") == "attempts" else "_child.html"
        return page(request, name, c=data.child_data(store, int(request.path_params["id"])))

    def workers_part(request: Request) -> Response:
        return page(request, "_workers.html", w=data.workers_data(store, settings))

    # JSON API -------------------------------------------------------------------------------
    def api_runs(request: Request) -> Response:
        return JSON(data.runs_data(store))

    def api_run(request: Request) -> Response:
        return JSON(data.run_data(store, run_id_of(request.path_params["ref"])))

    def api_children(request: Request) -> Response:
        rid = run_id_of(request.path_params["ref"])
        return JSON(data.children_data(store, rid, data.children_query(dict(request.query_params))))

    def api_child(request: Request) -> Response:
        return JSON(data.child_data(store, int(request.path_params["id"])))

    def api_diagram(request: Request) -> Response:
        j = store.job(int(request.path_params["id"]))
        if j is None:
            raise LookupError(f"no child job with id {request.path_params['id']}")
        acc = f", accuracy {j.reward:.4f}" if j.reward is not None else ""
        title = f"job {j.id}: {j.arch_id}{acc}\n{cell_of(j.cell).readable()}"
        return Response(_diagram_svg(json.dumps(j.cell), title), media_type="image/svg+xml")

    def api_workers(request: Request) -> Response:
        return JSON(data.workers_data(store, settings))

    # Actions --------------------------------------------------------------------------------
    async def _action(request: Request, do: Callable[[dict], dict]) -> Response:
        if not allow_actions:
            return _error(403, "actions are off: start `pnas dashboard --allow-actions` (with PNAS_DASHBOARD_TOKEN set) to retry or cancel")
        # A JSON body only: a cross-site form cannot send one without the browser asking first.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "send the action as JSON (Content-Type: application/json)")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        from starlette.concurrency import run_in_threadpool

        return JSON(await run_in_threadpool(do, body if isinstance(body, dict) else {}))

    def _retry(run_ref: int, job_ids: list[int] | None, level: int | None) -> dict:
        from pnas.commands.retry import requeue

        run = writer.require_run(run_ref)
        ids, lines = requeue(writer, settings, run, level=level, job_ids=job_ids)
        return {"requeued": ids, "lines": lines}

    async def retry_run(request: Request) -> Response:
        rid = run_id_of(request.path_params["ref"])

        return await _action(request, lambda b: _retry(rid, None, _level_of(b)))

    def _cancel(run_ref: int, job_ids: list[int] | None, level: int | None) -> dict:
        from pnas.commands.cancel import cancel_children

        run = writer.require_run(run_ref)
        done, lines = cancel_children(writer, settings, run, level=level, job_ids=job_ids)
        return {"cancelled": list(done.cancelled), "stopping": list(done.stopping), "lines": lines}

    def _level_of(body: dict) -> int | None:
        level = body.get("level")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise UserError(f"level must be a whole number, not {level!r}")
        return level

    async def cancel_run(request: Request) -> Response:
        rid = run_id_of(request.path_params["ref"])
        return await _action(request, lambda b: _cancel(rid, None, _level_of(b)))

    async def cancel_child(request: Request) -> Response:
        j = store.job(int(request.path_params["id"]))
        if j is None:
            return _error(404, f"no child job with id {request.path_params['id']}")
        return await _action(request, lambda b: _cancel(j.run_id, [j.id], None))

    async def retry_child(request: Request) -> Response:
        j = store.job(int(request.path_params["id"]))
        if j is None:
            return _error(404, f"no child job with id {request.path_params['id']}")
        return await _action(request, lambda b: _retry(j.run_id, [j.id], None))

    def favicon(request: Request) -> Response:
        return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    # Errors ---------------------------------------------------------------------------------
    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return _error(404, str(exc))
        return page(request, "error.html", message=str(exc))

    async def bad_request(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return _error(400, str(exc))
        return page(request, "error.html", message=str(exc))

    routes = [
        Route("/", runs_page),
        Route("/runs/{ref}", run_page),
        Route("/children/{id:int}", child_page),
        Route("/workers", workers_page),
        Route("/favicon.ico", favicon),
        Route("/part/runs", runs_part),
        Route("/part/runs/{ref}", run_part),
        Route("/part/runs/{ref}/children", children_part),
        Route("/part/runs/{ref}/finals", finals_part),
        Route("/part/children/{id:int}", child_part),
        Route("/part/workers", workers_part),
        Route("/api/runs", api_runs),
        Route("/api/runs/{ref}", api_run),
        Route("/api/runs/{ref}/children", api_children),
        Route("/api/runs/{ref}/retry", retry_run, methods=["POST"]),
        Route("/api/runs/{ref}/cancel", cancel_run, methods=["POST"]),
        Route("/api/children/{id:int}", api_child),
        Route("/api/children/{id:int}/diagram.svg", api_diagram),
        Route("/api/children/{id:int}/retry", retry_child, methods=["POST"]),
        Route("/api/children/{id:int}/cancel", cancel_child, methods=["POST"]),
        Route("/api/workers", api_workers),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        LookupError: not_found, UserError: bad_request,
    }  # fmt: skip
    app: ASGIApp = Starlette(routes=routes, exception_handlers=handlers)
    return TokenAuth(app, token) if token else app
