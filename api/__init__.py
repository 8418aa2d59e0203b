"""procexec's REST API: a thin FastAPI app over the engine."""
