"""SQL over the lake: `lakehouse.access.query.connect()` against DuckDB on plain Parquet and polars.

Target: DuckDB over the lake's views within 1.2x of DuckDB over the
same rows exported as plain Parquet (one file per table), ratio <= 1.2.

    .venv/bin/python -m bench.query [--events N] [--repeats R] [--keep DIR]

The lake is written the way the raw assets write it (LakeResource: raw_events
by day, several days per commit, stored by month and compacted at the end), with
synthetic rows of the raw tables' schemas. Every query runs once per engine to check
that all of them give the same answer, then R times; the best time counts.

Beside ours and the peer, the same Delta files read with a bare `read_parquet`
(unlocked, then locked as `connect()` locks its connections) are the floor of
the views: what the table's files cost whatever the views do. raw_events has at
least one file per day (its partitioning), so the floor is `--days` files.
"""

from __future__ import annotations

import argparse
import binascii
import functools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from bench.common import Result, run_in_workdir
from lakehouse.access.query import connect, lock
from lakehouse.lake import LakeResource
from lakehouse.lake.sql import cache_immutable_files

TARGET = 1.2
MIN_SECONDS_PER_QUERY = 5.0
FIRST_DAY = datetime(2026, 10, 1, tzinfo=UTC)
EVENT_MIX = {"login": 0.2, "view": 0.55, "like": 0.25}
CITIES = ("Berlin", "Lima", "Nairobi", "New York", "Oslo", "Pune", "Rome", "Tokyo")
TABLES = ("raw_events", "raw_photos", "raw_users")
COMMIT_INFO = {"dagster_run_id": "bench-query"}

Frames = dict[str, pl.LazyFrame]


@dataclass(frozen=True)
class Query:
    """One analytic question, as SQL (for both DuckDB engines) and as a polars plan."""

    name: str
    what: str
    sql: str
    plan: Callable[[Frames], pl.LazyFrame]
    keys: tuple[str, ...]


Engine = Callable[[Query], pl.DataFrame]


def likes_in_a_week(t: Frames, start: datetime) -> pl.LazyFrame:
    return (
        t["raw_events"]
        .filter(
            (pl.col("event") == "like")
            & (pl.col("ts") >= start)
            & (pl.col("ts") < start + timedelta(days=7))
        )
        .select(likes=pl.len(), users=pl.col("user_id").n_unique())
    )


def events_per_user(t: Frames) -> pl.LazyFrame:
    return t["raw_events"].group_by("user_id", "event").agg(n=pl.len())


def likes_per_author_city(t: Frames) -> pl.LazyFrame:
    likes = t["raw_events"].filter(pl.col("event") == "like").select("photo_id")
    authors = t["raw_photos"].select("photo_id", "user_id")
    cities = t["raw_users"].select("user_id", "home_city")
    return (
        likes.join(authors, on="photo_id")
        .join(cities, on="user_id")
        .group_by("home_city")
        .agg(likes=pl.len())
    )


def gap_to_previous_event(t: Frames) -> pl.LazyFrame:
    # event_id breaks ties: the lake's log times are whole seconds, so a user's events can tie
    previous = pl.col("ts").shift().over("user_id", order_by=["ts", "event_id"])
    return (
        t["raw_events"]
        .with_columns(gap_s=(pl.col("ts") - previous).dt.total_microseconds() / 1e6)
        .group_by("event")
        .agg(mean_gap_s=pl.col("gap_s").mean())
    )


def week_sql(start: datetime) -> str:
    """The scan+filter question for the week from `start` (UTC midnight)."""
    end = start + timedelta(days=7)
    return f"""SELECT count(*) AS likes, count(DISTINCT user_id) AS users FROM raw_events
           WHERE event = 'like' AND ts >= TIMESTAMPTZ '{start:%Y-%m-%d} 00:00:00+00'
             AND ts < TIMESTAMPTZ '{end:%Y-%m-%d} 00:00:00+00'"""  # noqa: S608 (dates only)


def queries(week: datetime) -> tuple[Query, ...]:
    """The four questions; scan+filter asks about the week from `week`."""
    scan = Query(
        "scan+filter",
        "likes in one week and how many users gave them",
        week_sql(week),
        functools.partial(likes_in_a_week, start=week),
        ("likes",),
    )
    return (scan, *OTHER_QUERIES)


def second_week(conn: duckdb.DuckDBPyConnection) -> datetime:
    """The week that scan+filter asks about: from the 8th day of the events (their last
    seven days where they span less than two weeks), so that it times a week of real rows
    whatever day the world starts on (the bench's world is not this module's: its week
    from FIRST_DAY held no row there, and scan+filter timed 60 files found empty)."""
    first, last = conn.sql("SELECT min(ts), max(ts) FROM raw_events").fetchone()  # type: ignore[misc]
    start = datetime.combine(first.astimezone(UTC).date(), datetime.min.time(), UTC)
    span = (last - start).days + 1
    return start + timedelta(days=min(7, max(0, span - 7)))


OTHER_QUERIES = (
    Query(
        "group-by",
        "events per user and kind",
        "SELECT user_id, event, count(*) AS n FROM raw_events GROUP BY user_id, event",
        events_per_user,
        ("user_id", "event"),
    ),
    Query(
        "join",
        "likes per home city of the photo's author (events x photos x users)",
        """SELECT u.home_city, count(*) AS likes
           FROM raw_events AS e JOIN raw_photos AS p USING (photo_id)
           JOIN raw_users AS u ON u.user_id = p.user_id
           WHERE e.event = 'like' GROUP BY u.home_city""",
        likes_per_author_city,
        ("home_city",),
    ),
    Query(
        "window",
        "mean time since the user's previous event, per kind (lag over all events)",
        """SELECT event, avg(epoch(ts) - epoch(previous)) AS mean_gap_s FROM (
             SELECT event, ts, lag(ts) OVER (PARTITION BY user_id ORDER BY ts, event_id) AS previous
             FROM raw_events) GROUP BY event""",
        gap_to_previous_event,
        ("event",),
    ),
)
# the week of the standalone world (from FIRST_DAY)
QUERIES = queries(FIRST_DAY + timedelta(days=7))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="rows in raw_events")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--photos", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30, help="daily partitions of raw_events")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (best wins)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--keep",
        type=Path,
        help="write the lake and Parquet here and keep them (a lake already there is reused)",
    )
    return parser.parse_args()


def hex_ids(rng: np.random.Generator, n: int) -> pl.Series:
    """n random 32-character hex strings (like event ids and row hashes)."""
    return pl.Series(np.frombuffer(binascii.hexlify(rng.bytes(16 * n)), dtype="S32")).cast(
        pl.String
    )


def timestamps(rng: np.random.Generator, n: int, days: int) -> pl.Series:
    """n UTC timestamps over `days` days from FIRST_DAY, microsecond resolution."""
    micros = rng.integers(0, days * 86_400 * 1_000_000, n)
    start = int(FIRST_DAY.timestamp() * 1_000_000)
    return pl.Series(micros + start).cast(pl.Datetime("us", "UTC"))


def users_frame(rng: np.random.Generator, users: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": np.arange(1, users + 1, dtype=np.int64),
            "created_at": timestamps(rng, users, 365).dt.offset_by("-1y"),
            "home_city": rng.choice(CITIES, users),
            "row_sha256": hex_ids(rng, users),
        }
    )


def photos_frame(rng: np.random.Generator, photos: int, users: int, days: int) -> pl.DataFrame:
    ids = np.arange(1, photos + 1, dtype=np.int64)
    return pl.DataFrame(
        {
            "photo_id": ids,
            "user_id": rng.integers(1, users + 1, photos),
            "object_key": [f"photos/{i % 97:02d}/{i}.jpg" for i in ids],
            "title": rng.choice(["sunset", "street", "portrait", "market", "harbour"], photos),
            "posted_at": timestamps(rng, photos, days),
            "latitude": rng.uniform(-60, 70, photos),
            "longitude": rng.uniform(-180, 180, photos),
            "location_name": rng.choice(CITIES, photos),
            "row_sha256": hex_ids(rng, photos),
        }
    )


def events_frame(
    rng: np.random.Generator, events: int, users: int, photos: int, days: int
) -> pl.DataFrame:
    """Parsed log events as raw_events holds them: in time order, numbered per day."""
    kind = rng.choice(list(EVENT_MIX), events, p=list(EVENT_MIX.values()))
    photo = np.where(kind == "login", 0, rng.integers(1, photos + 1, events))
    return (
        pl.DataFrame(
            {
                "event_id": hex_ids(rng, events),
                "ts": timestamps(rng, events, days),
                "user_id": rng.integers(1, users + 1, events),
                "event": kind,
                "photo_id": photo,
            }
        )
        .with_columns(photo_id=pl.when(pl.col("photo_id") > 0).then("photo_id"))
        .sort("ts")
        .with_columns(day=pl.col("ts").dt.strftime("%Y-%m-%d"))
        .with_columns(line=pl.int_range(1, pl.len() + 1).over("day").cast(pl.Int64))
        .select("event_id", "ts", "user_id", "event", "photo_id", "line", "day")
    )


def write_lake(root: Path, args: argparse.Namespace) -> LakeResource:
    """The three raw tables, written through LakeResource as the raw assets write them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lakehouse.lake.ledger import DAYS_PER_COMMIT

    rng = np.random.default_rng(args.seed)
    lake = LakeResource(root=str(root))
    lake.upsert("raw_users", users_frame(rng, args.users), ["user_id"], commit_info=COMMIT_INFO)
    photos = photos_frame(rng, args.photos, args.users, args.days)
    lake.upsert("raw_photos", photos, ["photo_id"], commit_info=COMMIT_INFO)
    events = events_frame(rng, args.events, args.users, args.photos, args.days)
    days = events["day"].unique().sort().to_list()
    for start in range(0, len(days), DAYS_PER_COMMIT):
        batch = days[start : start + DAYS_PER_COMMIT]
        lake.replace_partitions(
            "raw_events",
            events.filter(pl.col("day").is_in(batch)),
            key=["event_id"],
            partition_column="day",
            values=batch,
            commit_info=COMMIT_INFO,
        )
    lake.compact_months("raw_events", days, commit_info=COMMIT_INFO)
    return lake


def export_parquet(lake: LakeResource, out: Path) -> dict[str, list[str]]:
    """Each table's current rows as one plain Parquet file (the peer's input)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in TABLES:
        path = out / f"{name}.parquet"
        lake.read(name).write_parquet(path)  # type: ignore[union-attr]
        files[name] = [str(path)]
    return files


def delta_files(lake: LakeResource) -> dict[str, list[str]]:
    """The Parquet files of each table's current Delta snapshot (same bytes, no log)."""
    return {name: lake.open(name).file_uris() for name in TABLES}  # type: ignore[union-attr]


def parquet_connection(files: dict[str, list[str]]) -> duckdb.DuckDBPyConnection:
    """Plain DuckDB with a view per table over its Parquet files (hive paths give `day`).

    It caches the files as `connect()` caches the lake's (`cache_immutable_files`): the
    comparison is of the files and the views, not of cache settings.
    """
    conn = duckdb.connect(":memory:")
    cache_immutable_files(conn)
    for name, paths in files.items():
        listed = ", ".join(f"'{path}'" for path in paths)
        scan = f"read_parquet([{listed}], hive_partitioning = true)"
        conn.execute(f"CREATE VIEW {name} AS SELECT * FROM {scan}")  # noqa: S608
    return conn


def locked(conn: duckdb.DuckDBPyConnection, lake: LakeResource) -> duckdb.DuckDBPyConnection:
    """`conn` locked down as `connect()` locks its own (files of the lake only)."""
    lock(conn, lake)
    return conn


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def same_answer(query: Query, answers: dict[str, pl.DataFrame]) -> None:
    """Fail loudly unless every engine returned the same rows (order aside)."""
    first, *others = answers.items()
    expected = first[1].sort(query.keys)
    for engine, answer in others:
        try:
            assert_frame_equal(answer.sort(query.keys), expected, check_dtypes=False, rel_tol=1e-9)
        except AssertionError as exc:
            raise RuntimeError(f"{query.name}: {engine} differs from {first[0]}: {exc}") from exc


def measure(
    engines: dict[str, Engine],
    repeats: int,
    min_seconds: float = MIN_SECONDS_PER_QUERY,
    questions: tuple[Query, ...] = QUERIES,
) -> dict[tuple[str, str], float]:
    """Best seconds per (query, engine), after checking that the engines agree.

    Engines take turns within each round, so a burst of load on a shared
    machine hits them all alike instead of one engine's whole series. A query
    gets at least `repeats` rounds and at least `min_seconds` of them:
    the best of three 10 ms runs on two busy cores swung the ratios by 30 %.
    """
    for query in questions:
        answers = {name: run(query) for name, run in engines.items()}
        same_answer(query, answers)
        if query.name == "scan+filter" and not next(iter(answers.values()))["likes"][0]:
            raise RuntimeError(
                f"scan+filter found no row, so it would time empty scans: {query.sql}"
            )
    best: dict[tuple[str, str], float] = {}
    for query in questions:
        rounds, spent = 0, 0.0
        while rounds < repeats or spent < min_seconds:
            for name, run in engines.items():
                seconds = timed(functools.partial(run, query))
                best[query.name, name] = min(best.get((query.name, name), math.inf), seconds)
                spent += seconds
            rounds += 1
    return best


def ratio_line(seconds: dict[tuple[str, str], float], ours: str, peer: str) -> tuple[str, float]:
    ratios = [seconds[q.name, ours] / seconds[q.name, peer] for q in QUERIES]
    mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    return f"worst {max(ratios):.2f}x, geometric mean {mean:.2f}x", max(ratios)


def print_report(
    seconds: dict[tuple[str, str], float], engines: list[str], setup: dict[str, float]
) -> None:
    """Best times, every engine's ratio to the Parquet peer, and the target's verdict."""
    ours, peer = engines[0], engines[1]
    width = max(len(q.name) for q in QUERIES) + 2
    print(f"{'best ms':<{width}}" + "".join(f"{e:>28}" for e in engines))
    for q in QUERIES:
        cells = [
            f"{seconds[q.name, e] * 1000:.1f} ({seconds[q.name, e] / seconds[q.name, peer]:.2f}x)"
            for e in engines
        ]
        print(f"{q.name:<{width}}" + "".join(f"{c:>28}" for c in cells) + f"   {q.what}")
    print(f"(ratios are to {peer})")
    print("setup: " + ", ".join(f"{name} {s * 1000:.1f} ms" for name, s in setup.items()))
    for other in engines[2:]:
        print(f"{other} / {peer}: {ratio_line(seconds, other, peer)[0]}")
    summary, worst = ratio_line(seconds, ours, peer)
    verdict = "MET" if worst <= TARGET else "NOT MET"
    print(f"\ntarget: {ours} / {peer} <= {TARGET} on every query: {summary} -> {verdict}")


def compare(lake: LakeResource, work: Path, repeats: int, min_seconds: float) -> list[Result]:
    """The query comparison on an existing lake: its views vs the same rows as Parquet."""
    exported = export_parquet(lake, work / "parquet")
    ours, peer = connect(lake.root), parquet_connection(exported)
    engines: dict[str, Engine] = {
        "ours": lambda q: ours.sql(q.sql).pl(),
        "peer": lambda q: peer.sql(q.sql).pl(),
    }
    questions = queries(second_week(peer))
    seconds = measure(engines, repeats, min_seconds, questions)
    return [
        Result.of(
            f"query {q.name} ({q.what}): DuckDB over Delta vs plain Parquet",
            seconds[q.name, "ours"],
            seconds[q.name, "peer"],
            "s",
            seconds[q.name, "ours"] / seconds[q.name, "peer"],
            f"<= {TARGET}",
        )
        for q in questions
    ]


def run(work: Path, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    if (work / "lake" / "raw_events").is_dir() and (work / "parquet").is_dir():
        # a lake kept by an earlier run (--keep): measured again as it is, so that A/B
        # runs read the same files (writing it again would add versions)
        lake = LakeResource(root=str(work / "lake"))
        exported = {name: [str(work / "parquet" / f"{name}.parquet")] for name in TABLES}
        how = "kept from an earlier run"
    else:
        lake = write_lake(work / "lake", args)
        exported = export_parquet(lake, work / "parquet")
        how = f"written and exported in {time.perf_counter() - start:.1f} s"
    sizes = {name: lake.row_count(name) for name in TABLES}
    files = len(lake.open("raw_events").file_uris())  # type: ignore[union-attr]
    print(f"lake {lake.root}: {sizes}, raw_events in {files} files ({how})")
    print(f"duckdb {duckdb.__version__}, polars {pl.__version__}; best of {args.repeats} rounds\n")

    setup = {
        "connect()": timed(lambda: connect(lake.root)),
        "parquet views": timed(lambda: parquet_connection(exported)),
    }
    ours, peer = connect(lake.root), parquet_connection(exported)
    same_files = parquet_connection(delta_files(lake))
    same_files_locked = locked(parquet_connection(delta_files(lake)), lake)
    frames = {name: pl.scan_delta(lake.table_uri(name)) for name in TABLES}
    engines: dict[str, Engine] = {
        "duckdb delta views": lambda q: ours.sql(q.sql).pl(),
        "duckdb parquet": lambda q: peer.sql(q.sql).pl(),
        # the floor of the views: the snapshot's files, read bare, then locked as ours are
        "duckdb delta's parquet": lambda q: same_files.sql(q.sql).pl(),
        "delta's parquet, locked": lambda q: same_files_locked.sql(q.sql).pl(),
        "polars scan_delta": lambda q: q.plan(frames).collect(),
    }
    print_report(measure(engines, args.repeats), list(engines), setup)


def main() -> int:
    return run_in_workdir(run, parse_args(), "query")


if __name__ == "__main__":
    raise SystemExit(main())
