"""The whole Faust topology: the app with every agent, table, timer and HTTP page attached.

``pipeline.app`` is the bare app, which the modules below attach to when imported; this module
imports them all, so Faust's own command line sees what a worker runs::

    faust -A pipeline.topology topology        # agents and their input topics, tables, timers
    faust -A pipeline.topology agents --local  # the bulk-fed agents read a local channel
    faust -A pipeline.topology tables

Workers run with ``dpu worker`` (which imports this module), not ``faust worker``: it creates the
topics and the schema and checks the local table stores before Faust starts.
"""

from __future__ import annotations

import agents.commit_watchdog  # noqa: F401
import agents.counting  # noqa: F401
import agents.daily  # noqa: F401
import agents.health  # noqa: F401
import agents.mirror  # noqa: F401
import agents.reconcile  # noqa: F401
import agents.schema  # noqa: F401
import agents.sinks  # noqa: F401
import pipeline.views  # noqa: F401
from pipeline.app import TIMERS, app
from pipeline.bulk_input import bulk_input
from tables.faust_tables import TABLES

__all__ = ["app", "TABLES", "agent_inputs", "describe"]


def agent_inputs() -> dict[str, list[str]]:
    """Each agent's input topics: its channel's topic, or what it takes from the bulk input."""
    bulk = {sub.name: sorted(sub.topics) for sub in bulk_input(app).subscriptions}
    inputs = {}
    for name, agent in app.agents.items():
        try:
            inputs[name] = [agent.channel.get_topic_name()]
        except NotImplementedError:  # a local channel: the bulk input feeds it
            inputs[name] = bulk.get(name, [])
    return inputs


def describe() -> dict[str, list[dict]]:
    """Agents, tables and timers, as ``faust -A pipeline.topology topology`` lists them."""
    return {
        "agents": [{"name": name, "inputs": topics}
                   for name, topics in sorted(agent_inputs().items())],
        "tables": [{"name": name, "changelog": table.changelog_topic.get_topic_name()}
                   for name, table in TABLES.items()],
        "timers": [{"name": name, "interval_s": interval} for name, interval in TIMERS],
    }


@app.command()
async def topology(self) -> None:
    """List the agents with their input topics, the tables and the timers."""
    found = describe()
    if self.json:
        self.say(self.dumps(found))
        return
    self.say(self.tabulate([[a["name"], ", ".join(a["inputs"])] for a in found["agents"]],
                           headers=["agent", "input topics"], title="Agents"))
    self.say(self.tabulate([[t["name"], t["changelog"]] for t in found["tables"]],
                           headers=["table", "changelog"], title="Tables"))
    self.say(self.tabulate([[t["name"], f"{t['interval_s']:g} s"] for t in found["timers"]],
                           headers=["timer", "every"], title="Timers"))
