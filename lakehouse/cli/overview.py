"""What a newcomer asks first: which settings are in force (`settings`), and what the
lake holds after a run (`summary`: tables, quarantine, the two models' scores)."""

from __future__ import annotations

import argparse

from lakehouse import settings


def add_overview_commands(commands: argparse._SubParsersAction) -> None:
    """Register `settings` and `summary` on the `lakehouse` parser."""
    shown = commands.add_parser(
        "settings", help="check the settings and print them (passwords masked)"
    )
    shown.add_argument(
        "--instance",
        action="store_true",
        help="also the production instance's variables (what `make instance` needs)",
    )
    shown.set_defaults(run=run_settings)
    summary = commands.add_parser(
        "summary", help="tables with versions and rows, quarantine by reason, the models' scores"
    )
    summary.set_defaults(run=run_summary)


def run_settings(args: argparse.Namespace) -> int:
    """Fail with one line on the first wrong setting; else print every one in force."""
    from lakehouse.graph.executors import default_executor

    default_executor()  # LAKEHOUSE_ENV, the executor and the production profile's variables
    if args.instance and settings.is_production():
        settings.require_production_settings(settings.CELERY_BROKER_VAR, *settings.INSTANCE_VARS)
    values = {
        settings.ENV_VAR: settings.environment(),
        settings.SOURCES_VAR: settings.sources_uri(),
        settings.METADATA_DB_VAR: settings.masked(settings.metadata_db_url()),
        settings.LAKE_VAR: settings.lake_uri(),
        settings.LOGS_START_VAR: settings.logs_start(),
        settings.LOGS_END_VAR: settings.logs_end() or "(open: up to today)",
    }
    for name, value in values.items():
        print(f"{name}={value}")
    return 0


def run_summary(args: argparse.Namespace) -> int:
    """The closing report of `make demo`: what was built and how well the models score."""
    import polars as pl

    from lakehouse.access.catalog import table_entries
    from lakehouse.lake import LakeResource
    from lakehouse.lake.tables import QUARANTINE
    from lakehouse.models.registry import CLASSIFIERS, POPULARITY_MODELS

    lake = LakeResource(root=settings.lake_uri())
    entries = [e for e in table_entries(lake) if not e.name.startswith("_")]
    if not entries:
        print(f"no tables under {lake.root} yet (run `make demo`)")
        return 0
    width = max(len(e.name) for e in entries)
    print(f"{'table':<{width}}  {'layer':<8}  {'version':>7}  {'rows':>9}")
    for e in entries:
        print(f"{e.name:<{width}}  {e.layer:<8}  {e.version:>7}  {e.rows:>9}")

    quarantine = lake.read(QUARANTINE, columns=["source", "reason", "resolved_at"])
    active = (
        pl.DataFrame() if quarantine is None else quarantine.filter(pl.col("resolved_at").is_null())
    )
    print(f"\nquarantine: {active.height} active row{'' if active.height == 1 else 's'}")
    if active.height:
        counts = (
            active.group_by("source", "reason")
            .len()
            .sort("len", "source", descending=[True, False])
        )
        for source, reason, n in counts.iter_rows():
            print(f"  {n:>4}  {source}: {reason}")

    classifier = CLASSIFIERS.models(lake).filter(pl.col("current"))
    if classifier.is_empty():
        print("\nstyle_content_classifier: no model yet")
    else:
        row = classifier.row(0, named=True)
        print(
            f"\nstyle_content_classifier {row['model_version']}: held-out accuracy content "
            f"{row['content_accuracy']:.3f}, style {row['style_accuracy']:.3f} "
            f"({row['train_photos']} training photos, {row['held_out_photos']} held out)"
        )
    popularity = POPULARITY_MODELS.models(lake).filter(pl.col("current"))
    if popularity.is_empty():
        print("popularity_model: not trained yet")
    else:
        row = popularity.row(0, named=True)
        print(
            f"popularity_model {row['model_version']}: val MAE {row['val_mae']:.3f} likes "
            f"against {row['baseline_mean_mae']:.3f} predicting the mean and "
            f"{row['no_classifier_mae']:.3f} without the classifier's features; "
            f"Spearman {row['val_spearman']:.3f} "
            f"({row['train_rows']} train, {row['val_rows']} val rows)"
        )
    return 0
