"""The incidents pages' HTML: server-rendered, no script."""

import html
from collections.abc import Iterable, Mapping
from typing import Any

from components.ui.core import IncidentRow, StoryStep

__all__ = ["approvals_html", "document", "incident_html", "incidents_html", "message_html"]

_STYLE = (
    "body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:20px auto;padding:0 16px;color:#1f2933}"
    "header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #e4e7eb}"
    "h1{font-size:20px}h2{font-size:16px;margin-top:24px}table{border-collapse:collapse;width:100%}"
    "td,th{padding:4px 8px;text-align:left;border-bottom:1px solid #f0f2f4}a{color:#1f5fbf}"
    ".tier-escalate{color:#b54708}.tier-block{color:#b42318}.tier-execute{color:#067647}"
    "ol.story{padding-left:20px}ol.story li{margin:10px 0}.when{color:#52606d;font-size:12px}"
    ".detail{margin:2px 0 0;color:#3e4c59}form.inline{display:inline}button{margin-right:6px}"
    ".pending{background:#fffaeb;border:1px solid #fedf89;border-radius:6px;padding:8px 12px;margin:8px 0}"
    "iframe{width:100%;height:900px;border:1px solid #e4e7eb;border-radius:6px}.note{color:#52606d}"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def document(title: str, body: str, *, signed_in: bool, csrf: str) -> str:
    """A whole page: the header (sign in or out) and ``body``."""
    if signed_in:
        session = (
            f'<form class=inline method=post action="/signout"><input type=hidden name=csrf value="{_e(csrf)}">'
            "<span class=note>signed in</span> <button>Sign out</button></form>"
        )
    else:
        session = (
            '<form class=inline method=post action="/signin"><label>Token <input type=password name=token '
            "autocomplete=off required></label> <button>Sign in</button></form>"
        )
    return (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{_e(title)} · driftpilot</title>"
        f'<style>{_STYLE}</style><header><a href="/"><strong>driftpilot</strong></a>{session}</header>'
        f"<main>{body}</main></html>"
    )


def _answer_form(approval: Mapping[str, Any], csrf: str) -> str:
    approval_id = _e(approval["id"])
    return (
        f'<form class=inline method=post action="/approvals/{approval_id}">'
        f'<input type=hidden name=csrf value="{_e(csrf)}">'
        "<label>Your name <input name=actor required maxlength=80 autocomplete=name></label> "
        "<button name=decision value=approve>Approve</button><button name=decision value=reject>Reject</button>"
        "</form>"
    )


def approvals_html(pending: Iterable[Mapping[str, Any]], *, signed_in: bool, csrf: str) -> str:
    """The pending approvals, with approve and reject buttons for a signed-in person."""
    items = []
    for approval in pending:
        proposal = approval["proposal"]
        answer = _answer_form(approval, csrf) if signed_in else "<span class=note>sign in to answer</span>"
        incident = _e(proposal["incident"])
        items.append(
            f'<div class=pending id="{_e(approval["id"])}"><strong>{_e(approval["id"])}</strong>: '
            f'{_e(proposal["action"])} for <a href="/incidents/{incident}">{incident}</a>'
            f" (confidence {float(proposal.get('confidence', 0)):.2f}) — held because "
            f"{_e('; '.join(approval.get('reasons', [])))}<div>{answer}</div></div>"
        )
    return "<h2>Pending approvals</h2>" + ("".join(items) or "<p class=note>None.</p>")


def incidents_html(rows: Iterable[IncidentRow]) -> str:
    """The incidents, most recent first."""
    body = "".join(
        f'<tr><td><a href="/incidents/{_e(r.incident)}">{_e(r.incident)}</a></td><td>{_e(r.started)}</td>'
        f"<td>{_e(r.kind)}</td><td>{_e(r.action)}</td><td class=tier-{_e(r.tier)}>{_e(r.tier)}</td>"
        f"<td>{_e(r.outcome)}{' (waiting: ' + _e(r.pending) + ')' if r.pending else ''}</td></tr>"
        for r in rows
    )
    if not body:
        return "<h2>Incidents</h2><p class=note>No incident yet.</p>"
    return (
        "<h2>Incidents</h2><table><tr><th>incident</th><th>started</th><th>kind</th><th>action</th><th>tier</th>"
        f"<th>outcome</th></tr>{body}</table>"
    )


def incident_html(
    incident: str,
    steps: Iterable[StoryStep],
    *,
    pending: Iterable[Mapping[str, Any]],
    has_report: bool,
    signed_in: bool,
    csrf: str,
) -> str:
    """An incident's story, its pending approval and its drift report."""
    story = "".join(
        f'<li id="entry-{s.seq}"><strong>{_e(s.title)}</strong> <span class=when>#{s.seq} · {_e(s.time)} · '
        f"{_e(s.actor)}</span>" + "".join(f"<div class=detail>{_e(line)}</div>" for line in s.lines) + "</li>"
        for s in steps
    )
    waiting = [a for a in pending if a["proposal"]["incident"] == incident]
    report = (
        f'<h2>Drift report</h2><iframe src="/incidents/{_e(incident)}/drift" title="drift report"></iframe>'
        if has_report
        else "<p class=note>No drift report was kept for this incident.</p>"
    )
    return (
        f"<h1>Incident {_e(incident)}</h1>"
        + (approvals_html(waiting, signed_in=signed_in, csrf=csrf) if waiting else "")
        + f"<h2>Story</h2><ol class=story>{story}</ol>{report}"
    )


def message_html(title: str, text: str) -> str:
    """A short page body for an error or a refusal."""
    return f'<h1>{_e(title)}</h1><p>{_e(text)}</p><p><a href="/">Back to the incidents</a></p>'
