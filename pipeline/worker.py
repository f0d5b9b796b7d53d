"""Starting a Faust worker: topics and schema first, then the agents and the web view."""

from __future__ import annotations

import asyncio

from pipeline.settings import Settings, use


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    from pipeline.db import migrate
    from pipeline.topics import ensure_topics

    use(settings)
    (settings.state_dir / "worker").mkdir(parents=True, exist_ok=True)
    asyncio.run(ensure_topics(settings))
    migrate(settings.database_url)

    # Import order matters: the settings above configure the app these modules attach to.
    from faust import Worker

    import agents.counting  # noqa: F401
    import agents.daily  # noqa: F401
    import agents.reconcile  # noqa: F401
    import agents.sinks  # noqa: F401
    import pipeline.views  # noqa: F401
    from pipeline.app import app

    worker = Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner turns the root logger to DEBUG so that every debug record (one
    # per message produced) can spin it: a tenth of the worker's time. Workers run headless.
    worker.spinner = None
    worker.execute_from_commandline()
