"""The processes procexec runs: those that installed packages offer through an entry point
(the bundled examples among them), and those of the modules the settings name."""

from __future__ import annotations

import importlib
import importlib.metadata

from procexec.engine.process import ProcessRegistry
from procexec.engine.settings import Settings

#: the entry-point group through which installed packages offer processes: each entry names a
#: module whose top level defines them
PLUGIN_GROUP = "procexec.processes"
#: the plugin that `PROCEXEC_EXAMPLES` turns on and off (procexec's own wheel offers it)
EXAMPLES_PLUGIN = "examples"


def load_registry(settings: Settings) -> ProcessRegistry:
    """The processes of the installed plugins (the examples unless turned off), then those of
    the configured modules."""
    registry = ProcessRegistry()
    plugins = sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name)
    for entry in plugins:
        if entry.name == EXAMPLES_PLUGIN and not settings.examples:
            continue
        try:
            module = entry.load()
        except ImportError as exc:
            raise RuntimeError(
                f"processes plugin {entry.name!r} ({entry.value}) cannot be imported: {exc}"
            ) from exc
        if registry.add_module(module) == 0:
            raise RuntimeError(f"processes plugin {entry.name!r} ({entry.value}) defines none")
    variable = Settings.env_name("process_modules")
    for name in settings.process_modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise RuntimeError(f"{variable}: cannot import module {name!r}: {exc}") from exc
        except Exception as exc:  # its own code failed: its error, in one line
            raise RuntimeError(
                f"{variable}: importing module {name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if registry.add_module(module) == 0:
            raise RuntimeError(f"{variable}: module {name!r} defines no Process")
    return registry
