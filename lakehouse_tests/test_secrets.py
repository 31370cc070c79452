"""Secrets come from the environment and go nowhere else.

A sentinel database password (Postgres with trust auth still connects) and a
sentinel S3 secret key (moto accepts any) are planted in the environment; the
sources are observed and the raw layer materialized into an on-disk Dagster
instance (sources and lake on S3, the metadata DB on Postgres), plus one run that
fails on a wrong database and a missing bucket. Neither sentinel may appear in the
logs (stdout, stderr, step errors), the Dagster
instance directory (run and event storage, compute logs), the lake, or what the
webserver answers over GraphQL. That user SQL stays read-only is proven in
test_query.py (test_the_guard_refuses_everything_but_a_read and the shell test).
The Label Studio API token: a server that echoes it back gets it into no error text
here; test_clients_studio.py checks the live round trip's output, database and lake.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import dagster as dg
import pytest
import sqlalchemy as sa

from lakehouse.definitions import build_definitions
from lakehouse.demo.world import generate_world
from lakehouse_tests.conftest import RAW_LAYER, WORLD, Lakehouse, project_instance
from lakehouse_tests.hostile import record
from lakehouse_tests.servers.s3 import aws_settings
from lakehouse_tests.test_ui import graphql, loaded_asset_nodes, running_webserver

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
]

DB_PASSWORD = "pg-sentinel-5e7c1d"
S3_SECRET = "s3-sentinel-9f4a2b"
SENTINELS = (DB_PASSWORD, S3_SECRET)

METADATA = """
fragment entries on MetadataEntry {
  label description
  ... on TextMetadataEntry { text }
  ... on PathMetadataEntry { path }
  ... on MarkdownMetadataEntry { mdStr }
  ... on JsonMetadataEntry { jsonString }
  ... on UrlMetadataEntry { url }
  ... on IntMetadataEntry { intRepr }
}
"""
FAILURE = """
fragment failure on PythonError { className message stack cause { message stack } }
"""
RUNS = """
{ runsOrError { ... on Runs { results { runId status runConfigYaml tags { key value } } } } }
"""
RUN_EVENTS = (
    METADATA
    + FAILURE
    + """
query Events($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events {
      __typename
      ... on MessageEvent { message }
      ... on ExecutionStepFailureEvent { error { ...failure } }
      ... on RunFailureEvent { pipelineName }
      ... on EngineEvent { metadataEntries { ...entries } error { ...failure } }
      ... on MaterializationEvent { metadataEntries { ...entries } }
      ... on ObservationEvent { metadataEntries { ...entries } }
    } }
  }
}
"""
)
ASSETS = (
    METADATA
    + """
{ assetNodes {
    assetKey { path }
    assetMaterializations(limit: 3) { metadataEntries { ...entries } }
    assetObservations(limit: 3) { metadataEntries { ...entries } }
} }
"""
)
RESOURCES = """
{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
    ... on RepositoryLocation { repositories { allTopLevelResourceDetails {
        name configuredValues { key value type } } } }
} } } } }
"""


@dataclass
class SecretWorld:
    home: Path
    env: dict[str, str]
    client: object
    bucket: str


@pytest.fixture
def secret_world(
    tmp_path: Path, postgres_db: str, s3_endpoint: str, s3_bucket: str
) -> Iterator[SecretWorld]:
    """Postgres with a password in its URL, sources and lake on S3 with a secret key (the
    session's servers: a database and a bucket of its own)."""
    endpoint, bucket = s3_endpoint, s3_bucket
    url = sa.make_url(postgres_db).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    world = tmp_path / "world"
    world.mkdir()
    generate_world(world, url, **WORLD)
    aws = {**aws_settings(endpoint), "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_SECRET,
        region_name=aws["AWS_REGION"],
    )
    for path in world.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"sources/{path.relative_to(world)}")
    home = tmp_path / "home"
    home.mkdir()
    project_instance(home)
    env = {
        **aws,
        "DAGSTER_HOME": str(home),
        "LAKEHOUSE_SOURCES": f"s3://{bucket}/sources",
        "LAKEHOUSE_LAKE": f"s3://{bucket}/lake",
        "LAKEHOUSE_METADATA_DB": url,
    }
    yield SecretWorld(home, env, client, bucket)


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [sentinel for sentinel in SENTINELS if sentinel.encode() in data]


class EnvLakehouse(Lakehouse):
    """The harness, with definitions built from the environment as in production."""

    def definitions(self) -> dg.Definitions:
        return build_definitions()


def test_secrets_appear_in_no_log_record_metadata_lake_or_ui(
    secret_world: SecretWorld, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    world = secret_world
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.get() as instance:
        lakehouse = EnvLakehouse(sources=Path(), lake=Path(), instance=instance)
        lakehouse.observe()
        lakehouse.materialize()
        # a run whose database does not exist and whose lake bucket is gone: its errors are
        # what a user reads first, and must not carry the secrets either
        monkeypatch.setenv("LAKEHOUSE_METADATA_DB", world.env["LAKEHOUSE_METADATA_DB"] + "_gone")
        monkeypatch.setenv("LAKEHOUSE_LAKE", "s3://no-such-bucket/lake")
        failed = lakehouse.materialize(select={"raw_users", "raw_objects"}, raise_on_error=False)
    assert not failed.success
    errors = [e.step_failure_data.error for e in failed.all_events if e.is_step_failure]
    shown = " ".join(error.to_string() for error in errors)
    assert "cannot read table" in shown and "***" in shown, "the failure says why, masked"
    output = "".join(capfd.readouterr())
    assert "RUN_SUCCESS" in output and "STEP_FAILURE" in output
    assert leaks(shown + output) == [], "logs and errors"
    record("secret", "logs of 3 runs (stdout, stderr), step errors", "no sentinel; URL masked")

    files = [path for path in world.home.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in files), "run and event storage was written"
    assert any("logs" in path.parts for path in files), "compute logs were written"
    for path in files:
        assert leaks(path.read_bytes()) == [], f"instance file {path}"
    record("secret", f"instance directory: {len(files)} files", "no sentinel")

    lake = [
        item["Key"]
        for page in world.client.get_paginator("list_objects_v2").paginate(Bucket=world.bucket)
        for item in page.get("Contents", [])
        if item["Key"].startswith("lake/")
    ]
    assert any("/_delta_log/" in key for key in lake)
    for key in lake:
        body = world.client.get_object(Bucket=world.bucket, Key=key)["Body"].read()
        assert leaks(body) == [], f"lake object {key}"
    record("secret", f"lake on S3: {len(lake)} objects", "no sentinel")

    with running_webserver(world.home, world.env) as (url, log):
        loaded_asset_nodes(url, set(RAW_LAYER), log)
        runs = graphql(url, RUNS)["runsOrError"]["results"]
        answers = [runs, graphql(url, ASSETS), graphql(url, RESOURCES)]
        answers += [graphql(url, RUN_EVENTS, {"runId": r["runId"]}) for r in runs]
    text = json.dumps(answers)
    assert len(runs) == 3 and "LAKEHOUSE_METADATA_DB" in text and "ENV_VAR" in text
    assert "quarantine" in text and "cannot read table" in text
    assert leaks(text) == [], "GraphQL answers"
    assert leaks(log.read_bytes()) == [], "webserver log"
    record("secret", f"UI GraphQL: {len(runs)} runs, events, assets, resources", "no sentinel")


LABEL_STUDIO_TOKEN = "ls-sentinel-7d3a90"


class EchoingStudio(http.server.BaseHTTPRequestHandler):
    """A hostile Label Studio: it refuses every request, quoting the headers and body."""

    def do_GET(self) -> None:
        status = 401 if self.path.startswith("/api/users") else 500
        sent = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        body = json.dumps({"detail": f"denied {dict(self.headers)} {sent}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("token", [LABEL_STUDIO_TOKEN, f"eyJ{LABEL_STUDIO_TOKEN}.a.b"])
def test_the_label_studio_token_appears_in_no_error_or_repr(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that echoes the token back: our errors still do not carry it (the live
    round trip in test_clients_studio.py checks output, metadata DB and lake too)."""
    from lakehouse.labels.studio_api import StudioClient, StudioError

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoingStudio)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
        client = StudioClient.from_environment()
        assert token not in repr(client)
        for call in (client.users, lambda: client.project("p")):
            with pytest.raises(StudioError) as raised:
                call()
            message = str(raised.value)
            assert message.startswith("Label Studio at http://127.0.0.1:") and "\n" not in message
            assert "denied" in message, "the server's answer is quoted"
            assert "sentinel" not in message, "no part of the token, even cut short"
            assert raised.value.__suppress_context__, "no chained HTTP error in a traceback"
    finally:
        server.shutdown()
        server.server_close()
