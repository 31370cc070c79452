"""A running Label Studio, through its REST API (plain HTTP: no SDK in our venv).

The URL and the API token come from the environment only. The token never
leaves this module: it is not part of the client's repr, and every error text
is scrubbed of it before it is raised. Errors are one line each (server down,
token refused, another answer than expected).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit, urlunsplit
from urllib.request import Request, urlopen

from lakehouse.labels.studio import CHOICES

URL_VAR = "LABEL_STUDIO_URL"
TOKEN_VAR = "LABEL_STUDIO_API_KEY"
PROJECT_VAR = "LABEL_STUDIO_PROJECT"
DEFAULT_URL = "http://localhost:8080"
DEFAULT_PROJECT = "lakehouse photos"
TIMEOUT_S = 60.0
ANSWER_SHOWN = 200  # characters of a refusal's body quoted in the error


class StudioError(RuntimeError):
    """Label Studio could not be reached, refused us, or answered something unexpected."""


@dataclass(frozen=True)
class StudioClient:
    """One Label Studio server and the token that opens it (a legacy API token, or a
    personal access token, which is exchanged for a short-lived access token)."""

    url: str
    token: str = field(repr=False)
    timeout: float = TIMEOUT_S
    _bearer: list[str] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_environment(cls) -> StudioClient:
        """`LABEL_STUDIO_URL` (default http://localhost:8080) and `LABEL_STUDIO_API_KEY`."""
        token = os.environ.get(TOKEN_VAR, "").strip()
        if not token:
            raise StudioError(
                f"{TOKEN_VAR} is not set: copy the token from Label Studio "
                "(Account & Settings -> Personal Access Token, or the legacy token) into it"
            )
        url = os.environ.get(URL_VAR, "").strip() or DEFAULT_URL
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StudioError(f"{URL_VAR}={shown_url(url)!r} is not an http(s) URL")
        return cls(url.rstrip("/"), token)

    # --- the calls the flywheel needs -------------------------------------------------

    def users(self) -> dict[int, str]:
        """Every user's e-mail by id: exports name annotators by id only."""
        answer = self.call("GET", "/api/users/")
        rows = answer.get("results", answer) if isinstance(answer, dict) else answer
        return {row["id"]: row["email"] for row in rows if row.get("email")}

    def project(self, title: str) -> dict[str, Any] | None:
        """The project with this title, or None."""
        answer = self.call("GET", "/api/projects/", query={"title": title, "page_size": 1000})
        rows = answer.get("results", []) if isinstance(answer, dict) else answer
        return next((row for row in rows if row.get("title") == title), None)

    def ensure_project(self, title: str, config: str) -> tuple[dict[str, Any], str]:
        """Create the project, or give an existing one our labeling config; says which."""
        found = self.project(title)
        if found is None:
            body = {"title": title, "label_config": config}
            return self.call("POST", "/api/projects/", body), "created"
        if not config_difference(found.get("label_config", "")):
            return found, "unchanged"
        updated = self.call("PATCH", f"/api/projects/{found['id']}/", {"label_config": config})
        return updated, "updated"

    def connect_local_files(self, project_id: int, path: str) -> str:
        """A Local Files storage on the project for `path` (under Label Studio's document
        root), so `/data/local-files/?d=…` images load; nothing is synced from it."""
        storages = self.call("GET", "/api/storages/localfiles/", query={"project": project_id})
        if any(row.get("path") == path for row in storages):
            return "present"
        body = {"project": project_id, "path": path, "title": "photos", "use_blob_urls": False}
        self.call("POST", "/api/storages/localfiles/", body)
        return "added"

    def import_tasks(self, project_id: int, tasks: list[dict[str, object]]) -> int:
        """Import tasks (with their predictions); returns how many the server took."""
        answer = self.call("POST", f"/api/projects/{project_id}/import", tasks)
        return int(answer.get("task_count", 0))

    def export(self, project_id: int) -> str:
        """The project's full JSON export (every task, every annotation), as text."""
        query = {"exportType": "JSON", "download_all_tasks": "true"}
        return self.text("GET", f"/api/projects/{project_id}/export", query=query)

    # --- HTTP --------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        query: Mapping[str, object] | None = None,
    ) -> Any:
        """One JSON request; the answer decoded."""
        text = self.text(method, path, body, query)
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError as exc:
            raise self.error(f"{method} {path} answered something that is not JSON") from exc

    def text(
        self,
        method: str,
        path: str,
        body: object = None,
        query: Mapping[str, object] | None = None,
    ) -> str:
        """One request; the answer as text, or StudioError in one line."""
        target = self.url + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": self._authorization(), "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            with urlopen(  # noqa: S310 (the scheme was checked to be http or https)
                Request(target, data=data, headers=headers, method=method), timeout=self.timeout
            ) as answer:
                return answer.read().decode()
        except HTTPError as exc:
            detail = _detail(exc, self.token)
            if exc.code in (401, 403):
                raise self.error(
                    f"refused the token in {TOKEN_VAR} ({exc.code}: {detail}); "
                    "check the token and that its user belongs to the organization"
                ) from None
            raise self.error(f"{method} {path} answered {exc.code}: {detail}") from None
        except (URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise self.error(
                f"is not answering ({reason}): start it (`make label-studio`) or set {URL_VAR}"
            ) from None

    def error(self, text: str) -> StudioError:
        """A one-line error naming the server, the token scrubbed from it."""
        message = f"Label Studio at {shown_url(self.url)} {text}"
        return StudioError(" ".join(message.replace(self.token, "***").split()))

    def _authorization(self) -> str:
        if not is_personal_access_token(self.token):
            return f"Token {self.token}"
        if not self._bearer:
            answer = self._refresh()
            self._bearer.append(answer)
        return f"Bearer {self._bearer[0]}"

    def _refresh(self) -> str:
        """Exchange a personal access token (a JWT refresh token) for an access token."""
        request = Request(
            self.url + "/api/token/refresh/",
            data=json.dumps({"refresh": self.token}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                return json.loads(answer.read())["access"]
        except HTTPError as exc:
            detail = _detail(exc, self.token)
            raise self.error(
                f"refused the personal access token in {TOKEN_VAR} ({exc.code}: {detail})"
            ) from None
        except (URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise self.error(
                f"is not answering ({reason}): start it (`make label-studio`) or set {URL_VAR}"
            ) from None
        except (ValueError, KeyError) as exc:
            raise self.error("answered a token refresh without an access token") from exc


def is_personal_access_token(token: str) -> bool:
    """Personal access tokens are JWTs (three base64 parts); legacy tokens are hex."""
    return token.startswith("eyJ") and token.count(".") == 2


def shown_url(url: str) -> str:
    """The URL without any user:password part, fit for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def config_choices(config: str) -> dict[str, list[str]]:
    """The `Choices` controls of a labeling config: name -> values."""
    try:
        root = ET.fromstring(config)
    except ET.ParseError:
        return {}
    return {
        choices.attrib.get("name", ""): [c.attrib.get("value", "") for c in choices.iter("Choice")]
        for choices in root.iter("Choices")
    }


def config_difference(found: str) -> str:
    """How a project's config differs from ours, in a few words (empty: it asks our
    questions with our answers; other controls beside them do not count)."""
    theirs = config_choices(found)
    missing = [name for name in CHOICES if name not in theirs]
    other = [name for name in CHOICES if name in theirs and theirs[name] != list(CHOICES[name])]
    parts = []
    if missing:
        parts.append(f"no Choices named {', '.join(missing)}")
    if other:
        parts.append(f"other answers for {', '.join(other)}")
    return "; ".join(parts)


def _detail(exc: HTTPError, token: str) -> str:
    """The short reason of a refusal: the `detail` of Label Studio's JSON error, else its
    text; the token is scrubbed before it is cut short (no prefix of it survives)."""
    try:
        body = exc.read().decode(errors="replace")
    except OSError:
        return exc.reason or ""
    try:
        answer = json.loads(body)
    except json.JSONDecodeError:
        answer = body
    if isinstance(answer, dict):
        answer = answer.get("detail") or answer.get("validation_errors") or answer
    return " ".join(str(answer).replace(token, "***").split())[:ANSWER_SHOWN]
