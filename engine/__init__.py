"""procexec's domain: executions, process definitions, the phase runner, queries and stores.

Nothing in this package imports FastAPI or Celery.
"""

from engine.context import PhaseContext
from engine.process import Process

__all__ = ["PhaseContext", "Process"]
__version__ = "0.1.0"
