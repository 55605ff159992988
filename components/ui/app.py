"""The incidents and approvals web app (Starlette): read the decision state; answer approvals as the CLI does.

Access: every page is readable; answering an approval needs the installation's token, given as
``Authorization: Bearer <token>`` or through the sign-in form, which sets an HttpOnly,
SameSite=Strict session cookie (an HMAC of the token, never the token). Every form that
changes something carries a CSRF token (an HMAC of the token) and is refused from another
origin. The only write is ``Approvals.resolve``: the ledger gains the same entry as
``driftpilot approve``, naming the person who answered.
"""

import hashlib
import hmac
import json
import re
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from components.decide.approvals import ApprovalError
from components.decide.core import DecisionState
from components.ui.core import list_incidents, tell
from components.ui.page import approvals_html, document, incident_html, incidents_html, message_html

__all__ = ["SESSION_COOKIE", "create_app"]

SESSION_COOKIE = "driftpilot_session"
_MAX_FORM_BYTES = 8192
_INCIDENT = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # with no-referrer a browser sends its own forms as Origin: null
    "Cache-Control": "no-store",
}


def _digest(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def create_app(state: DecisionState, *, token: str, secure_cookie: bool = False) -> Starlette:
    """The app over one installation's decision state.

    Args:
        state: The decision state (ledger, approvals, drift reports) it reads and answers in.
        token: The installation's token; at least 16 characters.
        secure_cookie: Mark the session cookie ``Secure`` (served over HTTPS).

    Raises:
        ValueError: When the token is too short to be a secret.
    """
    if len(token) < 16:
        raise ValueError("the UI token must be at least 16 characters (e.g. `openssl rand -hex 24`)")
    session, csrf = _digest(token, "session"), _digest(token, "csrf")

    def signed_in(request: Request) -> bool:
        bearer = request.headers.get("authorization", "")
        if bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:].encode(), token.encode()):
            return True
        return hmac.compare_digest(request.cookies.get(SESSION_COOKIE, "").encode(), session.encode())

    def page(title: str, body: str, request: Request, status: int = 200) -> HTMLResponse:
        text = document(title, body, signed_in=signed_in(request), csrf=csrf)
        return HTMLResponse(text, status_code=status, headers=_HEADERS)

    async def form(request: Request) -> dict[str, str] | None:
        """The posted form, or None when it is too big or not a form."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return None
        body = await request.body()
        if len(body) > _MAX_FORM_BYTES:
            return None
        parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def same_origin(request: Request) -> bool:
        """No Origin or Referer (a command-line client), or this host's."""
        origin = request.headers.get("origin") or request.headers.get("referer")
        if origin is None:
            return True
        return origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")

    async def refused(request: Request, fields: dict[str, str] | None, *, needs_csrf: bool = True) -> Response | None:
        if fields is None:
            return page("Refused", message_html("Refused", "send a small URL-encoded form"), request, 400)
        if not same_origin(request):
            return page("Refused", message_html("Refused", "a form from another site"), request, 403)
        bearer = request.headers.get("authorization", "").startswith("Bearer ")
        if needs_csrf and not bearer and not hmac.compare_digest(fields.get("csrf", "").encode(), csrf.encode()):
            return page("Refused", message_html("Refused", "the form's CSRF token is missing or wrong"), request, 403)
        return None

    async def home(request: Request) -> Response:
        approvals = state.approvals()
        pending = approvals.pending()
        body = approvals_html(pending, signed_in=signed_in(request), csrf=csrf) + incidents_html(
            list_incidents(state.ledger.entries(), pending)
        )
        return page("Incidents", body, request)

    async def incident(request: Request) -> Response:
        name = request.path_params["incident"]
        if not _INCIDENT.fullmatch(name):
            return page("Not found", message_html("Not found", "no such incident"), request, 404)
        steps = tell(state.ledger.story(name))
        if not steps:
            return page("Not found", message_html("Not found", f"no ledger entries for incident {name}"), request, 404)
        body = incident_html(
            name,
            steps,
            pending=state.approvals().pending(),
            has_report=state.drift_report(name).exists(),
            signed_in=signed_in(request),
            csrf=csrf,
        )
        return page(f"Incident {name}", body, request)

    async def drift(request: Request) -> Response:
        from components.drift.core import DriftReport
        from components.drift.page import render_report_html

        name = request.path_params["incident"]
        path = state.drift_report(name)
        if not _INCIDENT.fullmatch(name) or not path.exists():
            return PlainTextResponse("no drift report for this incident", status_code=404, headers=_HEADERS)
        report = DriftReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
        return HTMLResponse(render_report_html(report), headers=_HEADERS)

    async def answer(request: Request) -> Response:
        fields = await form(request)
        problem = await refused(request, fields)
        if problem is not None:
            return problem
        assert fields is not None
        if not signed_in(request):
            return page(
                "Not signed in", message_html("Not signed in", "sign in with the token to answer"), request, 401
            )
        decision, actor = fields.get("decision"), fields.get("actor", "").strip()
        if decision not in ("approve", "reject") or not actor or len(actor) > 80:
            return page("Refused", message_html("Refused", "give your name and approve or reject"), request, 400)
        try:
            resolved = state.approvals().resolve(
                request.path_params["approval"], approve=decision == "approve", actor=f"{actor} (web)"
            )
        except ApprovalError as exc:
            return page("Not answered", message_html("Not answered", str(exc)), request, 409)
        return RedirectResponse(f"/incidents/{resolved['proposal']['incident']}", status_code=303, headers=_HEADERS)

    async def signin(request: Request) -> Response:
        fields = await form(request)
        problem = await refused(request, fields, needs_csrf=False)
        if problem is not None:
            return problem
        assert fields is not None
        if not hmac.compare_digest(fields.get("token", "").encode(), token.encode()):
            return page("Not signed in", message_html("Not signed in", "that is not the token"), request, 401)
        response = RedirectResponse("/", status_code=303, headers=_HEADERS)
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", secure=secure_cookie)
        return response

    async def signout(request: Request) -> Response:
        problem = await refused(request, await form(request))
        if problem is not None:
            return problem
        response = RedirectResponse("/", status_code=303, headers=_HEADERS)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=secure_cookie)
        return response

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/incidents/{incident}", incident),
            Route("/incidents/{incident}/drift", drift),
            Route("/approvals/{approval}", answer, methods=["POST"]),
            Route("/signin", signin, methods=["POST"]),
            Route("/signout", signout, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )
