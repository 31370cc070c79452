"""Storage faults: an S3 endpoint that stops answering mid-run, a full disk, a read-only
lake. Each ends in one clear error naming the table, where it lives and the cause,
with every table left at a committed version; retries with backoff ride out a short
outage.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable

from lakehouse import failpoints
from lakehouse.definitions import build_definitions
from lakehouse.graph.defaults import STORAGE_RETRY
from lakehouse.graph.partitions import partition_range_tags
from lakehouse.lake import LakeResource
from lakehouse_tests.conftest import FIRST_DAY, LAST_DAY, RAW_LAYER, Lakehouse, materializations
from lakehouse_tests.runs import succeeded
from lakehouse_tests.servers.need import need
from lakehouse_tests.servers.postgres import free_port
from lakehouse_tests.servers.s3 import aws_settings, create_buckets, start_moto

pytestmark = pytest.mark.reliability

BUCKET = "lake-bucket"
EVERY_DAY = partition_range_tags(FIRST_DAY, LAST_DAY)
# seconds between a failed attempt and the next, as the README states them
RETRY_DELAYS_S = (1, 3, 7)


class Gate:
    """A TCP relay in front of a server. `shut` makes the endpoint behave like a stopped
    server (new connections refused, open ones cut) while the server keeps its data;
    `open` brings it back on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def shut(self) -> None:
        assert self.listener is not None
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for connection in self.connections:
                connection.close()
            self.connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.connections |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()


@pytest.fixture(scope="module")
def gate() -> Iterator[Gate]:
    """moto behind a gate; the lake's AWS settings point at the gate."""
    port = free_port()
    server = start_moto(port)
    try:
        create_buckets(f"http://127.0.0.1:{port}", (BUCKET,))
        relay = Gate(port)
        relay.open()
        yield relay
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3_env(gate: Gate, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in aws_settings(f"http://127.0.0.1:{gate.port}").items():
        monkeypatch.setenv(name, value)


def run_raw_layer(
    lake: str,
    sources: Path,
    select: frozenset[str] = RAW_LAYER,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    """The raw layer (or some of it) over every log day, in this process; failures are
    returned, not raised."""
    defs = build_definitions(
        lake=lake, sources=str(sources), metadata_db=f"sqlite:///{sources / 'metadata.db'}"
    )
    keys = {k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[0] in select}
    return (
        defs.resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection=keys)
        .execute_in_process(
            instance=instance or dg.DagsterInstance.ephemeral(),
            tags=EVERY_DAY,
            raise_on_error=False,
        )
    )


def step_failures(result: dg.ExecuteInProcessResult) -> dict[str, dg.DagsterEvent]:
    return {event.step_key: event for event in result.all_events if event.is_step_failure}


def retries(result: dg.ExecuteInProcessResult) -> list[str]:
    return [event.step_key for event in result.all_events if event.is_step_up_for_retry]


def retry_waits(instance: dg.DagsterInstance, run_id: str) -> list[float]:
    """Seconds from each step failure that was retried to the step's restart, from the
    timestamps of the run's events."""
    wanted = {dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED}
    failed_at: dict[str, float] = {}
    waits = []
    for entry in instance.all_logs(run_id, of_type=wanted):
        if entry.dagster_event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            failed_at[entry.step_key] = entry.timestamp
        else:
            waits.append(entry.timestamp - failed_at.pop(entry.step_key))
    return waits


def test_every_asset_carries_the_storage_retry_policy(tmp_path: Path) -> None:
    """The README's retry spacing holds for every asset only if each one has the policy."""
    assert [STORAGE_RETRY.calculate_delay(n) for n in (1, 2, 3)] == list(RETRY_DELAYS_S)
    defs = build_definitions(
        lake=str(tmp_path / "lake"), sources=str(tmp_path), metadata_db="sqlite://"
    )
    graph = defs.resolve_asset_graph()
    policies = {
        key.to_user_string(): graph.get(key).assets_def.op.retry_policy
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable
    }
    assert len(policies) >= 15, sorted(policies)
    missing = sorted(name for name, policy in policies.items() if policy != STORAGE_RETRY)
    assert not missing, f"assets without the storage retry policy: {missing}"


def clear_error(event: dg.DagsterEvent) -> str:
    """The error at the root of a step failure (under Dagster's wrappers: "error occurred
    while executing", "exceeded max_retries"), checked to be ours, on one line: no chain
    of storage-client errors behind it."""
    error = event.event_specific_data.error
    while error.cause is not None:
        error = error.cause
    message = error.message.strip()
    assert message.startswith("lakehouse.") and "\n" not in message, message
    return message


def committed_tables(lake: LakeResource) -> dict[str, int]:
    """Every table under the root at its latest committed version, each read completely."""
    versions = {}
    for name in lake.table_names():
        table = DeltaTable(lake.table_uri(name), storage_options=lake.storage_options())
        assert table.to_pyarrow_table().num_rows == table.count()
        versions[name] = table.version()
    return versions


@pytest.fixture(scope="module")
def reference_versions(pristine_world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The raw layer's data versions on a local disk that never failed."""
    lake = tmp_path_factory.mktemp("storage-reference") / "lake"
    result = run_raw_layer(str(lake), pristine_world)
    succeeded(result, "the reference run on a local disk")
    return {name: found["data_version"] for name, found in materializations(result).items()}


def test_s3_outage_mid_run_fails_clearly_and_leaves_no_partial_table(
    gate: Gate, s3_env: None, pristine_world: Path, reference_versions: dict
) -> None:
    lake = LakeResource(root=f"s3://{BUCKET}/outage")
    instance = dg.DagsterInstance.ephemeral()
    with failpoints.on("committed/raw_users", gate.shut):
        result = run_raw_layer(
            lake.root, pristine_world, frozenset({"raw_users", "raw_photos"}), instance
        )
    gate.open()

    assert not result.success
    failed = step_failures(result)
    assert set(failed) == {"raw_users"}, "raw_photos was skipped, not half-done"
    message = clear_error(failed["raw_users"])
    assert message.startswith("lakehouse.lake.faults.LakeUnavailable")
    assert lake.root in message and "unreachable" in message
    assert f"127.0.0.1:{gate.port}" in message
    assert retries(result) == ["raw_users"] * 3, "retried with backoff before giving up"
    waits = retry_waits(instance, result.run_id)
    assert len(waits) == 3 and all(
        wait >= delay for wait, delay in zip(waits, RETRY_DELAYS_S, strict=True)
    ), f"seconds between a failed attempt and the next: {waits}, expected {RETRY_DELAYS_S}"
    tables = committed_tables(lake)
    assert tables["raw_users"] == 0, "committed before the outage, intact"
    assert "raw_photos" not in tables, "nothing of the steps the outage stopped"

    rerun = run_raw_layer(lake.root, pristine_world)
    succeeded(rerun, "the rerun after the outage")
    assert {k: v["data_version"] for k, v in materializations(rerun).items()} == (
        reference_versions
    )


def test_s3_outage_is_ridden_out_by_retries_with_backoff(
    gate: Gate, s3_env: None, pristine_world: Path, reference_versions: dict
) -> None:
    lake = LakeResource(root=f"s3://{BUCKET}/retried")
    # the endpoint stops after raw_users commits and is back once the step has failed
    with (
        failpoints.on("committed/raw_users", gate.shut),
        failpoints.on("lake/unavailable", gate.open),
    ):
        result = run_raw_layer(lake.root, pristine_world)

    succeeded(result, "a run through an outage that ends in time")
    assert retries(result) == ["raw_users"]
    found = materializations(result)
    assert {k: v["data_version"] for k, v in found.items()} == reference_versions
    assert set(committed_tables(lake)) >= RAW_LAYER


def mount(args: list[str]) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode:
        need(
            f"`mount {' '.join(args)}` refused ({done.stderr.strip()}): the full-disk and "
            "read-only tests need root (CAP_SYS_ADMIN)",
            "run them as root, as CI and `make test` do",
        )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: a disk that can be filled."""
    path = tmp_path / "disk"
    path.mkdir()
    mount(["-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)])
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 16))
                out.flush()
        except OSError:
            pass
    return filler


# the steps a run after `touch_a_photo` writes with: the others find nothing changed
REWRITES_HASH_CACHE = {"raw_objects"}


def touch_a_photo(sources: Path) -> None:
    """Change a photo's mtime: its hash is checked again and the hash cache rewritten."""
    photo = next(p for p in sorted((sources / "photos").rglob("*")) if p.is_file())
    stat = photo.stat()
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def snapshot(lake: LakeResource) -> dict[str, list]:
    return {
        name: sorted(map(repr, lake.read(name).to_dicts()))  # type: ignore[union-attr]
        for name in lake.table_names()
    }


def test_full_disk_fails_clearly_and_leaves_tables_unchanged(
    small_disk: Path, lakehouse: Lakehouse
) -> None:
    lakehouse.lake = small_disk / "lake"
    lakehouse.materialize()
    lake = lakehouse.lake_resource
    versions, rows = committed_tables(lake), snapshot(lake)
    touch_a_photo(lakehouse.sources)
    filler = fill(small_disk)

    result = run_raw_layer(str(lake.root), lakehouse.sources)
    assert not result.success
    assert not retries(result), "a full disk is not retried"
    failed = step_failures(result)
    assert set(failed) == REWRITES_HASH_CACHE, f"failed steps: {sorted(failed)}"
    for step, event in failed.items():
        message = clear_error(event)
        assert str(lakehouse.lake) in message and "No space left on device" in message, step
    assert committed_tables(lake) == versions
    assert snapshot(lake) == rows

    filler.unlink()
    succeeded(run_raw_layer(str(lake.root), lakehouse.sources), "the run after space was freed")


# every raw step checks that the lake can be written before it reads its source; these
# run first (raw_photos and raw_photo_labels wait for raw_users, and are skipped)
CHECK_WRITABLE_FIRST = {"raw_objects", "raw_users", "raw_events"}


@contextmanager
def read_only(directory: Path) -> Iterator[str]:
    """Make `directory` read-only; yield the cause a write will meet. Root ignores file
    modes, so as root the directory is bind-mounted read-only; otherwise chmod does."""
    if os.geteuid() == 0:
        mount(["--bind", str(directory), str(directory)])
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)
            yield "Read-only file system"
        finally:
            subprocess.run(["umount", str(directory)], check=True)
        return
    paths = [directory, *directory.rglob("*")]
    modes = {path: path.stat().st_mode for path in paths}
    try:
        for path in paths:
            path.chmod(modes[path] & ~0o222)
        yield "Permission denied"
    finally:
        for path in paths:
            path.chmod(modes[path])


def test_read_only_lake_fails_clearly_and_leaves_tables_unchanged(
    lakehouse: Lakehouse,
) -> None:
    lakehouse.materialize()
    lake = lakehouse.lake_resource
    versions, rows = committed_tables(lake), snapshot(lake)
    touch_a_photo(lakehouse.sources)
    with read_only(lakehouse.lake) as cause:
        result = run_raw_layer(str(lake.root), lakehouse.sources)

    assert not result.success
    assert not retries(result), "a read-only lake is not retried"
    failed = step_failures(result)
    assert set(failed) == CHECK_WRITABLE_FIRST, f"failed steps: {sorted(failed)}"
    for step, event in failed.items():
        message = clear_error(event)
        assert str(lakehouse.lake) in message and cause in message, step
    assert committed_tables(lake) == versions
    assert snapshot(lake) == rows
    succeeded(run_raw_layer(str(lake.root), lakehouse.sources), "the run on a writable lake")
