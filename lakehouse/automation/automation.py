"""The automation-condition sensor: declared here so that it runs by default.

Without it Dagster generates one that starts STOPPED, and the assets' automation
conditions (graph.defaults.flows_on) do nothing until someone switches it on in the UI.
"""

import dagster as dg

from lakehouse.settings import automation_interval_s

automation = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(include_sources=True),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=automation_interval_s(),
    description="Evaluates every asset's automation condition: content that changed upstream "
    "flows on, held back while an upstream blocking check fails. Pause it on the "
    "Automation page of the UI.",
)
