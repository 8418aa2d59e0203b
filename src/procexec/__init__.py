"""procexec: named ETL processes run phase by phase on Celery workers, with a REST API over
their execution documents.

The installed package holds everything under this one name: `procexec.engine` (the domain),
`procexec.api` (the REST API), `procexec.workers` (Celery), `procexec.examples` (the bundled
processes, a plugin), and here the command (`procexec.cli`) and the composition root
(`procexec.service`). In the source tree the first four are the top-level folders `engine/`,
`api/`, `workers/` and `examples/`, mapped by `package-dir` in pyproject.toml.

`from procexec import Process, PhaseContext` is what a process module needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from procexec.engine import PhaseContext, Process

__all__ = ["PhaseContext", "Process"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use, so that the wheel's build (procexec._stamp) can import this
    # package before its mapped parts are installed.
    if name in __all__:
        import procexec.engine

        return getattr(procexec.engine, name)
    raise AttributeError(f"module 'procexec' has no attribute {name!r}")
