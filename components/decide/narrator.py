"""The optional narrator: an OpenAI-compatible chat endpoint summarises an incident's story.

Off by default (``DRIFTPILOT_NARRATOR_URL`` unset). It only reads the ledger's entries and
writes prose for people; nothing it says reaches a decision. Any server of the OpenAI chat
completions API works (vLLM, llama.cpp's server, Ollama's ``/v1``, a hosted one): ``url`` is its
base (``.../v1``), ``model`` the model to ask, the key comes from ``DRIFTPILOT_NARRATOR_API_KEY``.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import requests

from components.common.audit import AuditEntry
from components.common.errors import ConfigError, DriftpilotError

__all__ = ["Narrator", "NarratorError"]

_SYSTEM = (
    "You summarise an ML operations incident for an on-call engineer, from its audit ledger entries "
    "(JSON, oldest first). In at most six sentences say what was detected, what the investigation "
    "found, what was decided and why, and what happened after. Use only facts in the entries; do "
    "not recommend actions."
)


class NarratorError(DriftpilotError):
    """The narrator's endpoint did not answer with a summary."""


@dataclass(frozen=True)
class Narrator:
    """An OpenAI-compatible chat endpoint.

    Attributes:
        url: The API's base URL (``https://host/v1``).
        model: The model to ask.
        api_key: Bearer token ('' for none).
        timeout_s: Seconds the endpoint gets.
    """

    url: str
    model: str
    api_key: str = ""
    timeout_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Narrator | None":
        """The narrator ``DRIFTPILOT_NARRATOR_URL`` / ``_MODEL`` / ``_API_KEY`` configure (None when off).

        Raises:
            ConfigError: When a URL is set without a model.
        """
        url = env.get("DRIFTPILOT_NARRATOR_URL", "")
        if not url:
            return None
        model = env.get("DRIFTPILOT_NARRATOR_MODEL", "")
        if not model:
            raise ConfigError("DRIFTPILOT_NARRATOR_URL is set: name the model in DRIFTPILOT_NARRATOR_MODEL")
        return cls(url.rstrip("/"), model, env.get("DRIFTPILOT_NARRATOR_API_KEY", ""))

    def narrate(self, entries: Sequence[AuditEntry]) -> str:
        """Summarise an incident's entries in plain language.

        Raises:
            NarratorError: When the endpoint fails or answers without a summary.
        """
        story = [{"time": e.time, "kind": e.kind, "actor": e.actor, "data": e.data} for e in entries]
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": _SYSTEM},
                {"role": "user", "content": json.dumps(story, ensure_ascii=False)},
            ],
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            answer = requests.post(f"{self.url}/chat/completions", json=body, headers=headers, timeout=self.timeout_s)
            answer.raise_for_status()
            text = answer.json()["choices"][0]["message"]["content"]
        except (requests.RequestException, ValueError, KeyError, IndexError, TypeError) as exc:
            raise NarratorError(f"the narrator at {self.url} gave no summary: {exc}") from exc
        return str(text).strip()
