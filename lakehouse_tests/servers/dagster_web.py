"""What the tests that start a Dagster webserver share: its GraphQL endpoint."""

from __future__ import annotations

import json
import urllib.request


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
    """The `data` of one GraphQL answer from the webserver at `url`; errors fail the test."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]
