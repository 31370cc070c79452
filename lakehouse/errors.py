"""Errors every layer may raise, at the bottom of the house: no Dagster, no storage.

A plain `ConfigError` is what load-time code (settings, the CLI, the executor
choice) raises; a step that finds a setting wrong raises a `SettingError`
(lakehouse.resources.errors), which is also a ConfigError, so the CLI prints
either as one line and Dagster fails the step at once.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is wrong: the message names the variable and its value."""
