"""procexec's domain: executions, process definitions, the phase runner, queries and stores.

Nothing in this package imports FastAPI or Celery.
"""

from procexec.engine.context import PhaseContext
from procexec.engine.process import Process

__all__ = ["PhaseContext", "Process"]
