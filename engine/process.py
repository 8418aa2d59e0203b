"""Process definitions: a name, a service, ordered phases, default parameters, triggers."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from procexec.engine.domain import DEFAULT_ENVIRONMENT, Status
from procexec.engine.errors import EXCERPT_CHARS, BadRequest, excerpt
from procexec.engine.notify_settings import Notify
from procexec.engine.params import Parameters

if TYPE_CHECKING:
    from procexec.engine.context import PhaseContext

#: a phase function: the run's context and the previous phase's result in, a result out
PhaseFunction = Callable[["PhaseContext", Any], Any]

MissedPolicy = Literal["skip", "latest"]
#: `skip`: fire times missed during an outage are skipped; `latest`: the latest one runs once
MISSED_POLICIES = ("skip", "latest")
#: the outcomes of a run that can trigger a following process
OUTCOMES = frozenset({Status.SUCCESS.value, Status.WARNING.value, Status.FAILED.value})

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


LostPolicy = Literal["resume", "fail"]
#: `resume`: a run whose worker died re-runs from its first unfinished phase; `fail`: it fails
LOST_POLICIES = ("resume", "fail")


@dataclass(frozen=True)
class PhaseDefinition:
    name: str
    function: PhaseFunction
    #: attempts after the first; None: the process's `retries`
    retries: int | None = None
    #: seconds between attempts; None: the process's `retry_delay`
    retry_delay: float | None = None
    #: seconds the phase may run; None: no limit of its own
    timeout: float | None = None


@dataclass
class Process:
    """A named process; add phases in order with the `phase` decorator.

    Its parameters are a pydantic model (`params=`), whose instance the phases receive as
    `ctx.params`, or plain `defaults` (a dict in `ctx.params`); a trigger whose body names
    another parameter, or gives one a value its type refuses, is refused with a 400.

    ```python
    DEMO = Process("DEMO", service="ETL", defaults={"sleep": 0})

    @DEMO.phase("EXTRACT")
    def extract(ctx, previous):
        ctx.log("reading")
        return [1, 2, 3]
    ```
    """

    name: str
    service: str = "ETL"
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: crontab (five fields), used by the beat scheduler
    schedule: str | None = None
    #: the timezone the crontab is read in (an IANA name such as `Europe/London`)
    timezone: str = "UTC"
    #: what a scheduler back from an outage does with the fire times it missed
    missed: MissedPolicy = "skip"
    #: the environment that scheduled and subscription runs run in
    environment: str = DEFAULT_ENVIRONMENT
    #: data ids (glob patterns such as `#ECB_FX.*`) whose updates trigger this process
    subscriptions: tuple[str, ...] = ()
    #: other processes' outcomes that trigger this one: `{"ECB_FX": ("success",)}`
    follows: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    enabled: bool = True
    #: attempts after the first failure of a phase, and the seconds between them
    retries: int = 0
    retry_delay: float = 0.0
    #: seconds the whole run may take (None: no limit)
    timeout: float | None = None
    #: what happens to a run whose worker died (see `LOST_POLICIES`), and how often at most
    on_lost: LostPolicy = "resume"
    max_recoveries: int = 3
    #: its own webhook notifications, over the global notification settings (`Notify`)
    notify: Notify | None = None
    #: runs of this process running at once, across every worker and host (None: no limit);
    #: the runs past it wait `triggered` for a slot (`engine.concurrency`)
    max_running: int | None = None
    #: one of its parameters: `max_running` then holds per value of it (one run per `date`)
    limit_key: str | None = None
    phases: list[PhaseDefinition] = field(default_factory=list)
    #: checks a trigger's parameters, once validated (what the phases receive); a
    #: `ValueError` or `TypeError` it raises refuses the trigger with a 400 carrying its message
    check: Callable[[Any], None] | None = None
    #: the parameters' model (a pydantic `BaseModel` subclass), instead of plain `defaults`
    params: type[BaseModel] | None = None
    #: what a trigger's body is validated against (made from `params` or `defaults`)
    parameters_model: Parameters = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"invalid process name {self.name!r}")
        if self.on_lost not in LOST_POLICIES:
            raise ValueError(f"process {self.name}: on_lost must be one of {LOST_POLICIES}")
        _check_limits(self.name, self.retries, self.retry_delay, self.timeout)
        if self.missed not in MISSED_POLICIES:
            raise ValueError(f"process {self.name}: missed must be one of {MISSED_POLICIES}")
        if isinstance(self.subscriptions, str):
            self.subscriptions = (self.subscriptions,)
        self.follows = {
            upstream: (outcomes,) if isinstance(outcomes, str) else tuple(outcomes)
            for upstream, outcomes in self.follows.items()
        }
        for upstream, outcomes in self.follows.items():
            unknown = set(outcomes) - OUTCOMES
            if unknown:
                raise ValueError(
                    f"process {self.name}: follows {upstream} on unknown outcomes {sorted(unknown)}"
                )
        if self.schedule is not None:
            from procexec.engine.crontab import Crontab

            Crontab(self.schedule, self.timezone)  # raises ScheduleError, naming the problem
        self.parameters_model = Parameters(self.name, self.params, self.defaults)
        self._check_defaults()
        _check_concurrency(self)

    def _check_defaults(self) -> None:
        """A definition whose defaults its own parameters (or `check`) refuse fails here, at
        start-up, as does one whose service-made runs could not give a required parameter."""
        model = self.parameters_model
        needed = model.required()
        try:
            model.check_defaults()
            if self.check is not None and not needed:
                self.check(model.arguments(model.validate({})))
        except (BadRequest, TypeError, ValueError) as exc:
            raise ValueError(f"process {self.name}: its defaults are refused: {exc}") from None
        if needed and (self.schedule or self.subscriptions or self.follows):
            raise ValueError(
                f"process {self.name}: parameter {needed[0]!r} has no default, but the runs the "
                "service makes (scheduled, subscription, follower) give no parameters"
            )

    def subscribes_to(self, data_id: str) -> bool:
        return any(fnmatch.fnmatchcase(data_id, pattern) for pattern in self.subscriptions)

    def phase(
        self,
        name: str,
        *,
        retries: int | None = None,
        retry_delay: float | None = None,
        timeout: float | None = None,
    ) -> Callable[[PhaseFunction], PhaseFunction]:
        """Decorator that appends a phase called `name` to this process.

        `retries`, `retry_delay` and `timeout` (seconds) apply to this phase alone.
        """
        name = name.upper()
        if any(existing.name == name for existing in self.phases):
            raise ValueError(f"process {self.name} already has a phase {name}")
        _check_limits(f"{self.name}.{name}", retries, retry_delay, timeout)

        def register(function: PhaseFunction) -> PhaseFunction:
            if any(existing.name == name for existing in self.phases):
                raise ValueError(f"process {self.name} already has a phase {name}")
            self.phases.append(PhaseDefinition(name, function, retries, retry_delay, timeout))
            return function

        return register

    def parameters(
        self, body: Mapping[str, Any] | None, *, added: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The parameters to record for a trigger's `body` (validated, defaults filled in) and
        the service's own `added` keys (`params.RESERVED`); a `BadRequest` naming each field
        refused otherwise, or what the process's `check` refused."""
        recorded = self.parameters_model.validate(body, added=added)
        if self.check is not None:
            try:
                self.check(self.parameters_model.arguments(recorded))
            except (TypeError, ValueError) as exc:
                raise BadRequest(f"body: {excerpt(str(exc), 2 * EXCERPT_CHARS)}") from None
        return recorded

    def arguments(self, recorded: Mapping[str, Any]) -> Any:
        """What the phases receive as `ctx.params` for recorded parameters."""
        return self.parameters_model.arguments(recorded)


def _check_limits(
    owner: str, retries: int | None, retry_delay: float | None, timeout: float | None
) -> None:
    if retries is not None and retries < 0:
        raise ValueError(f"{owner}: retries must be 0 or more")
    if retry_delay is not None and retry_delay < 0:
        raise ValueError(f"{owner}: retry_delay must be 0 or more seconds")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"{owner}: timeout must be more than 0 seconds")


def _check_concurrency(process: Process) -> None:
    limit, key = process.max_running, process.limit_key
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"process {process.name}: max_running must be a whole number, 1 or more")
    if key is not None and key not in process.parameters_model.names:
        known = ", ".join(sorted(process.parameters_model.names)) or "none"
        raise ValueError(
            f"process {process.name}: limit_key {key!r} is none of its parameters ({known})"
        )


class ProcessRegistry:
    """The processes this service knows, by name."""

    def __init__(self, processes: Iterable[Process] = ()) -> None:
        self._processes: dict[str, Process] = {}
        for process in processes:
            self.add(process)

    def add(self, process: Process) -> None:
        if not process.phases:
            raise ValueError(f"process {process.name} has no phases")
        existing = self._processes.get(process.name)
        if existing is not None and existing is not process:
            raise ValueError(f"two processes are called {process.name}")
        self._processes[process.name] = process

    def get(self, name: str) -> Process | None:
        return self._processes.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._processes

    def __iter__(self) -> Iterator[Process]:
        return iter(sorted(self._processes.values(), key=lambda p: p.name))

    def __len__(self) -> int:
        return len(self._processes)

    def add_module(self, module: Any) -> int:
        """Register every `Process` defined at the top level of a module; returns how many."""
        found = [value for value in vars(module).values() if isinstance(value, Process)]
        for process in found:
            self.add(process)
        return len(found)
