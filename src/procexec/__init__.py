"""procexec: named ETL processes run phase by phase on Celery workers, with a REST API over
their execution documents.

The installed package holds everything under this one name: `procexec.engine` (the domain),
`procexec.api` (the REST API), `procexec.workers` (Celery), `procexec.examples` (the bundled
processes, a plugin), and here the command (`procexec.cli`) and the composition root
(`procexec.service`). In the source tree the first four are the top-level folders `engine/`,
`api/`, `workers/` and `examples/`, mapped by `package-dir` in pyproject.toml.

What a process's author uses is imported from here: `Process`, `PhaseContext` and
`Observation` (`from procexec import Observation, PhaseContext, Process`), and `testing`, the
helper that runs a process in a test (`from procexec import testing`; `procexec.testing.run`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from procexec import testing
    from procexec.engine import PhaseContext, Process
    from procexec.engine.store.base import Observation

__all__ = ["Observation", "PhaseContext", "Process", "testing"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use, so that the wheel's build (procexec._stamp) can import this
    # package before its mapped parts are installed.
    if name in ("PhaseContext", "Process"):
        import procexec.engine

        return getattr(procexec.engine, name)
    if name == "Observation":
        from procexec.engine.store.base import Observation

        return Observation
    if name == "testing":
        import importlib

        return importlib.import_module("procexec.testing")
    raise AttributeError(f"module 'procexec' has no attribute {name!r}")
