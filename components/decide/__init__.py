"""The decision layer: investigate an incident, propose a response, rule on it under the safety policy, record it.

``investigate`` (what kind, what caused it, what it costs), ``strategy`` (what to do, with benefit,
cost and confidence), ``knowledge`` (past outcomes), ``safety`` (the declarative policy),
``core`` (the loop, its ledger entries, replays and files), ``signals`` (what is measured about a
batch), ``approvals``, ``alerts``, ``metrics`` (Prometheus), ``coordinator`` (alarms → runs) and
``narrator`` (an optional summary).
"""
