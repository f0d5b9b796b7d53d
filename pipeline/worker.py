"""Starting a Faust worker: topics and schema first, then the agents and the web view."""

from __future__ import annotations

import asyncio
import logging
import shutil

from pipeline.settings import Settings, use

log = logging.getLogger(__name__)


def drop_store_after_crash(settings: Settings) -> bool:
    """Remove the local table stores unless the last worker on them stopped cleanly.

    A killed worker can leave RocksDB holding writes whose changelog records never reached Kafka
    (a batch cut short between its steps). The changelogs are the truth other workers restore
    from, so this worker's stores are rebuilt from them too (Faust restores them at start).
    """
    store, clean = settings.store_dir, settings.state_dir / "worker.clean"
    dropped = False
    if store.exists() and any(store.iterdir()) and not clean.exists():
        log.warning("the last worker on %s did not stop cleanly: restoring the tables from "
                    "their changelogs", store)
        shutil.rmtree(store)
        dropped = True
    clean.unlink(missing_ok=True)
    store.mkdir(parents=True, exist_ok=True)
    return dropped


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    from pipeline.db import migrate
    from pipeline.topics import ensure_topics

    use(settings)
    drop_store_after_crash(settings)
    asyncio.run(ensure_topics(settings, changelogs=True))
    migrate(settings.database_url)

    # Import order matters: the settings above configure the app these modules attach to.
    from faust import Worker

    import agents.commit_watchdog  # noqa: F401
    import agents.counting  # noqa: F401
    import agents.daily  # noqa: F401
    import agents.mirror  # noqa: F401
    import agents.reconcile  # noqa: F401
    import agents.sinks  # noqa: F401
    import pipeline.views  # noqa: F401
    from pipeline.app import app

    worker = Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner turns the root logger to DEBUG so that every debug record (one
    # per message produced) can spin it: a tenth of the worker's time. Workers run headless.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if not exc.code:  # stopped cleanly: every batch in the stores was committed
            (settings.state_dir / "worker.clean").touch()
        raise
