"""The distributed deployment's files say what runs: docker-compose.yml and the Dockerfile,
read without Docker.

Each procexec service's command is parsed by procexec's own command line parser, and what it
passes through by Celery's worker command (click) or Flower's options (tornado); each
`PROCEXEC_*` variable set is a setting procexec reads and documents; every service has a health
check and waits for healthy services; the workers scale; Flower asks for a login; MongoDB has
one; Redis persists; the volumes are named; the ports are the loopback's unless told; the image
runs as a user of its own and reports the commit it was built from. The compose file is
interpolated as Compose does (`$$`, `${NAME:-default}`, `${NAME:?error}`), and no variable is
required by it: the checks of what a container needs are its entrypoint's, run here by `sh`
(the containers' `sh` is dash, as Debian's), and `.env.example` lists every variable.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import inspect
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from pymongo import uri_parser

from procexec import _stamp, cli
from procexec.engine import settings as settings_module
from tests.test_layout import MODULES
from tests.test_settings_documented import ROWS


class Loader(yaml.SafeLoader):
    """YAML as Compose reads it: a key given twice in one mapping is an error (PyYAML would
    keep the last); keys merged in with `<<` may be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [key.value for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"]
        twice = {key for key in keys if keys.count(key) > 1}
        if twice:
            raise yaml.constructor.ConstructorError(
                None, None, f"keys given twice: {sorted(twice)}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> Any:
    return yaml.load(text, Loader=Loader)  # a SafeLoader


ROOT = Path(__file__).resolve().parents[1]
COMPOSE = load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
#: the services that run procexec's image, and what each runs
PROCEXEC = {"api", "worker", "loader", "beat", "flower"}
#: what the compose file is interpolated with: a reader's `.env`
ENV = {"FLOWER_BASIC_AUTH": "admin:a-long-password", "MONGO_PASSWORD": "0a1b2c3d4e5f"}
#: the variables `.env` must give: without one, a service refuses to start
REQUIRED = {"MONGO_PASSWORD", "FLOWER_BASIC_AUTH"}
#: the queues: the runs' (procexec's Celery default) and the LOAD phases'
RUN_QUEUE, LOADER_QUEUE = "procexec", "loader"


class Missing(Exception):
    """A `${NAME:?error}` whose variable is unset."""


_VARIABLE = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


def interpolate(value: Any, env: Mapping[str, str] = ENV) -> Any:
    """`value` (a string, or lists and mappings of them) as Compose interpolates it."""
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["dollar"]:
            return "$"
        name, op, arg = match["name"] or match["bare"], match["op"], match["arg"]
        found = env.get(name)
        unset = found is None or (found == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and unset:
            return str(arg)
        if op in (":?", "?") and unset:
            raise Missing(f"{name}: {arg}")
        return found or ""

    return _VARIABLE.sub(substitute, value)


def references(value: Any) -> list[tuple[str, str | None, str | None]]:
    """The variables `value` (as `interpolate` takes it) refers to: (name, operator, argument)
    of each `${NAME...}` or `$NAME`, `$$` escapes left out."""
    if isinstance(value, list):
        return [found for item in value for found in references(item)]
    if isinstance(value, dict):
        return [found for item in value.values() for found in references(item)]
    if not isinstance(value, str):
        return []
    return [
        (match["name"] or match["bare"], match["op"], match["arg"])
        for match in _VARIABLE.finditer(value)
        if not match["dollar"]
    ]


def command(service: str) -> list[str]:
    found = interpolate(SERVICES[service]["command"])
    assert isinstance(found, list), f"{service}: give the command as a list (no shell)"
    return found


def parsed(argv: list[str]) -> tuple[Any, list[str]]:
    """procexec's own parser on `procexec ARGV...`: (its arguments, the passed-through ones)."""
    assert argv[0] == "procexec", argv
    try:
        args, extra = cli.build_parser().parse_known_args(argv[1:])
    except SystemExit as exc:
        raise AssertionError(f"procexec refuses {argv}") from exc
    if extra:
        assert args.command in cli.PASS_THROUGH, f"{argv}: {extra} is not procexec's"
    return args, extra


def celery_worker_options(options: list[str]) -> dict[str, Any]:
    """What Celery's `worker` command makes of `options`, as `procexec worker` hands them on."""
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery

    from procexec.workers.tasks import app

    # what `procexec worker` adds: its defaults for what `options` leaves unset (those that
    # depend on a setting, the loader queue say, are given the environment's)
    config = settings_module.Settings.from_env({})
    extra = {
        name: getattr(config, name)
        for name in inspect.signature(cli.worker_argv).parameters
        if name not in ("log_level", "options")
    }
    argv = cli.worker_argv("INFO", options, **extra)
    assert argv[0] == "worker"
    parent = click.Context(celery, obj=CLIContext(app=app, no_color=True, workdir=None))
    worker = celery.commands["worker"]
    try:
        with worker.make_context("worker", argv[1:], parent=parent) as context:
            return dict(context.params)
    except click.ClickException as exc:
        raise AssertionError(f"celery worker refuses {options}: {exc.format_message()}") from exc


def flower_options(options: list[str]) -> Any:
    """Flower's options (tornado's) parsed from `options`, on a parser of their own."""
    import flower.options  # noqa: F401  (defines them on tornado's global parser)
    import tornado.options

    fresh = tornado.options.OptionParser()
    for name, option in tornado.options.options._options.items():
        if name not in fresh._options:
            fresh.define(
                option.name, default=option.default, type=option.type, multiple=option.multiple
            )
    try:
        left = fresh.parse_command_line(["flower", *options])
    except (tornado.options.Error, ValueError) as exc:
        raise AssertionError(f"Flower refuses {options}: {exc}") from exc
    assert left == [], f"Flower ignores {left}"
    return fresh


def health_test(service: str) -> list[str]:
    check = SERVICES[service].get("healthcheck")
    assert check, f"{service} has no healthcheck"
    assert not check.get("disable"), f"{service}'s healthcheck is disabled"
    test = interpolate(check.get("test"))
    assert isinstance(test, list) and test, f"{service}: healthcheck.test as a list"
    assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{service}: {test}"
    return test


def shell_words(test: list[str]) -> list[str]:
    """A check's command as words: CMD's as given, CMD-SHELL's as the shell splits them."""
    return test[1:] if test[0] == "CMD" else shlex.split(test[1])


def python_code(test: list[str]) -> str:
    words = shell_words(test)
    assert words[:2] == ["python", "-c"], words
    return words[2]


# --- the services and their commands


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="twice"):
        load("a: 1\nb: 2\na: 3\n")
    assert load("x: &x {a: 1, b: 2}\ny: {<<: *x, a: 3}\n")["y"] == {"a": 3, "b": 2}


def test_the_deployment_has_its_services() -> None:
    assert set(SERVICES) == PROCEXEC | {"mongo", "redis"}
    assert SERVICES["mongo"]["image"] == "mongo:7"
    assert SERVICES["redis"]["image"].startswith("redis:")
    for name in PROCEXEC:
        assert SERVICES[name]["image"] == "procexec:latest", name
        assert SERVICES[name]["build"]["context"] == ".", name


def test_compose_itself_requires_no_variable() -> None:
    """A `${NAME:?error}` is read for the whole file: while NAME is unset, every compose
    command fails, `docker compose run --rm api procexec token create` and `logs` included."""
    required = [found for found in references(COMPOSE) if found[1] in (":?", "?")]
    assert required == []
    interpolate(COMPOSE, env={})  # the whole file, nothing set
    # and none without a default, which compose warns of at each command while it is unset
    assert [name for name, op, _ in references(COMPOSE) if op not in (":-", "-")] == []


@pytest.mark.parametrize("service", sorted(PROCEXEC))
def test_each_procexec_service_runs_a_procexec_command(service: str) -> None:
    args, _ = parsed(command(service))
    assert args.command == {"loader": "worker"}.get(service, service)


def test_the_api_serves_every_interface_of_its_container_on_its_published_port() -> None:
    args, _ = parsed(command("api"))
    assert args.host == "0.0.0.0"
    assert interpolate(SERVICES["api"]["ports"]) == [f"127.0.0.1:{args.port}:{args.port}"]


@pytest.mark.parametrize(("service", "variable"), [("api", "API_BIND"), ("flower", "FLOWER_BIND")])
def test_a_port_is_published_on_the_loopback_unless_told(service: str, variable: str) -> None:
    """`HOST_IP:HOST_PORT:CONTAINER_PORT`: without a HOST_IP, Docker publishes the port on every
    interface of the host (and past its firewall's rules)."""
    (port,) = SERVICES[service]["ports"]
    assert [name for name, _, _ in references(port)] == [variable]
    host_ip, published, target = interpolate(port, env={}).split(":")
    assert host_ip == "127.0.0.1" and published == target
    assert interpolate(port, env={variable: "0.0.0.0"}) == f"0.0.0.0:{published}:{target}"
    assert not variable.startswith("PROCEXEC_"), "procexec's settings are PROCEXEC_*"


def test_no_other_service_publishes_a_port() -> None:
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"api", "flower"}


@pytest.mark.parametrize(
    ("service", "node", "queue"),
    [("worker", "worker", RUN_QUEUE), ("loader", "loader", LOADER_QUEUE)],
)
def test_the_workers_options_are_celery_s(service: str, node: str, queue: str) -> None:
    _, options = parsed(command(service))
    params = celery_worker_options(options)
    assert params["queues"] == [queue], f"{service} consumes {params['queues']}"
    # `-n NAME@%h`: the node its health check pings (`%h` is the container's host name)
    assert f"{node}@%h" in options, options
    assert params["concurrency"] >= 1


def test_the_run_queue_is_procexec_s() -> None:
    from procexec.workers.celery_app import QUEUE

    assert QUEUE == RUN_QUEUE


def test_the_loader_reads_the_queue_send_hands_the_batches_to() -> None:
    """The loader queue is a setting (once there is one): as the services' environment sets it."""
    config = settings_module.Settings.from_env(_environment("loader"))
    assert getattr(config, "loader_queue", LOADER_QUEUE) == LOADER_QUEUE


def test_flower_s_options_are_flower_s() -> None:
    _, options = parsed(command("flower"))
    parsed_options = flower_options(options)
    # the login is not on the command line, which `ps` shows: Flower reads it from its
    # environment (test_flower_reads_its_login_from_its_environment)
    assert parsed_options.basic_auth == []
    port = parsed_options.port
    assert interpolate(SERVICES["flower"]["ports"]) == [f"127.0.0.1:{port}:{port}"]


def test_flower_reads_its_login_from_its_environment() -> None:
    """Flower's own reading of `FLOWER_*` variables, in a process of its own (it sets
    tornado's global options), with the service's environment."""
    probe = (
        "import flower.options; from flower.command import apply_env_options;"
        "from tornado.options import options; apply_env_options(); print(options.basic_auth)"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWER_")}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, **_environment("flower")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == repr([ENV["FLOWER_BASIC_AUTH"]])


# --- the settings


def _settings_read() -> set[str]:
    """The settings procexec reads: the settings module's variables, and any `PROCEXEC_*`
    name the package's source reads."""
    named = {
        value
        for name, value in vars(settings_module).items()
        if name.startswith("ENV_") and isinstance(value, str)
    }
    fields = getattr(settings_module.Settings, "model_fields", {})
    env_name = getattr(settings_module.Settings, "env_name", None)
    if env_name is not None:  # settings as fields, each read from its variable
        named |= {env_name(field) for field in fields}
    read = {
        found
        for path in MODULES.values()
        for found in re.findall(r"\bPROCEXEC_[A-Z_]+\b", path.read_text())
    }
    return named | read


SETTINGS = _settings_read() & set(ROWS)


def _environment(service: str) -> dict[str, str]:
    environment = SERVICES[service].get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return interpolate(environment)


def test_the_settings_are_known() -> None:
    assert {"PROCEXEC_STORE_URL", "PROCEXEC_BROKER_URL", "PROCEXEC_DATA_DIR"} <= SETTINGS


@pytest.mark.parametrize("service", sorted(PROCEXEC))
def test_each_procexec_variable_set_is_a_documented_setting(service: str) -> None:
    environment = _environment(service)
    unknown = {name for name in environment if name.startswith("PROCEXEC_")} - SETTINGS
    assert unknown == set(), f"{service} sets {unknown}: not a setting procexec reads and documents"


@pytest.mark.parametrize("service", sorted(PROCEXEC - {"flower"}))
def test_each_procexec_service_uses_mongodb_with_its_login_and_redis(service: str) -> None:
    environment = _environment(service)
    config = settings_module.Settings.from_env(environment)  # the values are valid settings
    assert config.broker_url == "redis://redis:6379/0"
    # the store: MongoDB's root user, made by the mongo service (authSource: its database)
    mongo = _environment("mongo")
    uri = uri_parser.parse_uri(config.store_url)
    assert uri["nodelist"] == [("mongo", 27017)] and uri["database"] == "procexec"
    assert uri["username"] == mongo["MONGO_INITDB_ROOT_USERNAME"]
    assert uri["password"] == mongo["MONGO_INITDB_ROOT_PASSWORD"] == ENV["MONGO_PASSWORD"]
    assert uri["options"]["authSource"] == "admin"


def test_flower_is_given_the_broker_and_no_store() -> None:
    """Flower watches the broker; the store's URL, and MongoDB's password with it, is not its."""
    environment = _environment("flower")
    assert environment["PROCEXEC_BROKER_URL"] == "redis://redis:6379/0"
    assert "PROCEXEC_STORE_URL" not in environment
    assert ENV["MONGO_PASSWORD"] not in str(environment)


def test_mongodb_has_a_login() -> None:
    """The mongo image makes the root user and turns authentication on when both variables are
    set (only one of them stops it): the user is fixed, the password .env's."""
    environment = SERVICES["mongo"]["environment"]
    assert environment["MONGO_INITDB_ROOT_USERNAME"] == "procexec"
    assert references(environment["MONGO_INITDB_ROOT_PASSWORD"]) == [("MONGO_PASSWORD", ":-", "")]
    assert "ports" not in SERVICES["mongo"]


# --- the checks before a service starts: its entrypoint, `sh -c CHECK NAME COMMAND...`


def entrypoint(service: str) -> list[str]:
    found = interpolate(SERVICES[service]["entrypoint"])
    assert isinstance(found, list) and found[:2] == ["sh", "-c"] and len(found) == 4, found
    return found


def start(
    service: str, env: Mapping[str, str], argv: list[str]
) -> subprocess.CompletedProcess[str]:
    """The service's entrypoint run by `sh` with `argv` as its command, in an environment of
    `env` alone (and PATH): what the container's would be, the service's `environment:`."""
    return subprocess.run(
        [*entrypoint(service), *argv],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _container_env(service: str, env: Mapping[str, str]) -> dict[str, str]:
    """The service's environment as the container has it, compose's file read with `env`."""
    return dict(interpolate(SERVICES[service]["environment"], env))


def _image_command(service: str) -> list[str]:
    """What the entrypoint is handed: the service's command (mongo's: its image's own)."""
    return list(interpolate(SERVICES[service]["command"]))


CHECKED = ["mongo", *sorted(PROCEXEC)]


@pytest.mark.parametrize("service", CHECKED)
def test_each_service_starts_its_command_once_checked(service: str) -> None:
    """With `.env`'s values, the check hands over to the command, its arguments untouched."""
    argv = _image_command(service)
    done = start(service, _container_env(service, ENV), ["printf", "%s\n", *argv])
    assert (done.returncode, done.stderr) == (0, ""), done
    assert done.stdout.splitlines() == argv


def _refused(service: str, done: subprocess.CompletedProcess[str], variable: str) -> None:
    """It exits 1 before its command, with one line naming the variable and .env."""
    assert done.returncode == 1, done
    assert done.stdout == "", "the command ran"
    (line,) = done.stderr.splitlines()
    name = entrypoint(service)[3]
    assert line.startswith(f"{name}: {variable} ") and ".env" in line, line


@pytest.mark.parametrize("service", sorted(PROCEXEC - {"flower"}))
@pytest.mark.parametrize("password", [None, ""])
def test_a_procexec_service_will_not_start_without_mongodb_s_password(
    service: str, password: str | None
) -> None:
    env = {key: value for key, value in ENV.items() if key != "MONGO_PASSWORD"}
    if password is not None:
        env["MONGO_PASSWORD"] = password
    argv = ["printf", "%s\n", *_image_command(service)]
    _refused(service, start(service, _container_env(service, env), argv), "MONGO_PASSWORD")


@pytest.mark.parametrize(
    ("password", "problem"),
    [(None, "is not set"), ("", "is not set"), ("pass@word", "may hold"), ("a b", "may hold")],
)
def test_mongodb_will_not_start_without_a_password_fit_for_the_url(
    password: str | None, problem: str
) -> None:
    env = {key: value for key, value in ENV.items() if key != "MONGO_PASSWORD"}
    if password is not None:
        env["MONGO_PASSWORD"] = password
    done = start("mongo", _container_env("mongo", env), ["printf", "%s\n", "mongod"])
    _refused("mongo", done, "MONGO_PASSWORD")
    assert problem in done.stderr


def test_a_password_mongodb_takes_is_the_store_s_as_it_is() -> None:
    """What mongo's check lets through needs no escaping in the store's URL."""
    password = "Az09._~-"
    env = {**ENV, "MONGO_PASSWORD": password}
    assert start("mongo", _container_env("mongo", env), ["true"]).returncode == 0
    url = _container_env("api", env)["PROCEXEC_STORE_URL"]
    assert uri_parser.parse_uri(url)["password"] == password


@pytest.mark.parametrize("login", [None, "", "admin", ":secret", "admin:"])
def test_flower_will_not_start_without_its_login(login: str | None) -> None:
    env = {key: value for key, value in ENV.items() if key != "FLOWER_BASIC_AUTH"}
    if login is not None:
        env["FLOWER_BASIC_AUTH"] = login
    argv = ["printf", "%s\n", *_image_command("flower")]
    _refused("flower", start("flower", _container_env("flower", env), argv), "FLOWER_BASIC_AUTH")


def test_flower_takes_several_logins() -> None:
    env = {**ENV, "FLOWER_BASIC_AUTH": "admin:a-long-password,alice:another-one"}
    assert start("flower", _container_env("flower", env), ["true"]).returncode == 0


def test_a_one_off_command_is_checked_too() -> None:
    """`docker compose run --rm api procexec token create` replaces the command, not the
    entrypoint: the check runs before it."""
    assert SERVICES["api"]["entrypoint"] == COMPOSE["x-procexec"]["entrypoint"]
    env = {key: value for key, value in ENV.items() if key != "MONGO_PASSWORD"}
    done = start("api", _container_env("api", env), ["procexec", "token", "create"])
    _refused("api", done, "MONGO_PASSWORD")


# --- .env.example

#: a variable's line of .env.example: `NAME=value`, or `# NAME=value` (an optional one, shown
#: commented out with its default)
_ENTRY = re.compile(r"^(?P<comment># )?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def _env_example() -> dict[str, tuple[bool, str]]:
    """.env.example's variables: name → (given, not commented out; the value)."""
    found: dict[str, tuple[bool, str]] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        entry = _ENTRY.match(line)
        if entry:
            assert entry["name"] not in found, f".env.example names {entry['name']} twice"
            found[entry["name"]] = (entry["comment"] is None, entry["value"])
    return found


def test_env_example_lists_every_variable_compose_reads() -> None:
    assert set(_env_example()) == {name for name, _, _ in references(COMPOSE)}


def test_env_example_gives_the_required_ones_to_be_filled_in() -> None:
    example = _env_example()
    assert {name for name, (given, _) in example.items() if given} == REQUIRED
    assert {example[name] for name in REQUIRED} == {(True, "")}, "a password in .env.example"


def test_env_example_shows_each_optional_one_s_default() -> None:
    example = _env_example()
    for name, _, default in references(COMPOSE):
        if name not in REQUIRED:
            assert example[name] == (False, default), name


def test_an_unedited_copy_of_env_example_starts_nothing() -> None:
    env = {name: value for name, (given, value) in _env_example().items() if given}
    for service in CHECKED:
        done = start(service, _container_env(service, env), ["true"])
        assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, (service, done)


def test_the_compose_file_s_git_ignores_env() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False, timeout=30
    )
    assert ignored.returncode == 0, ".env holds passwords: git must ignore it"
    assert _ignored(".env"), "and the image's build context must leave it out"


# --- health checks and start order


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_has_a_health_check(service: str) -> None:
    health_test(service)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_waits_for_healthy_services(service: str) -> None:
    depends = SERVICES[service].get("depends_on") or {}
    assert isinstance(depends, dict), f"{service}: depends_on without conditions"
    for name, condition in depends.items():
        assert name in SERVICES, f"{service} depends on a missing {name}"
        assert condition.get("condition") == "service_healthy", f"{service} on {name}"
        assert SERVICES[name].get("healthcheck"), f"{service} waits for {name}, which has none"


@pytest.mark.parametrize(
    ("service", "needs"),
    [
        ("api", {"mongo", "redis"}),
        ("worker", {"mongo", "redis"}),
        ("loader", {"mongo", "redis"}),
        ("beat", {"mongo", "redis"}),
        ("flower", {"redis"}),
    ],
)
def test_each_procexec_service_waits_for_what_it_needs(service: str, needs: set[str]) -> None:
    assert set(SERVICES[service].get("depends_on") or {}) == needs


def test_the_api_is_healthy_when_ready() -> None:
    from procexec.api.health import router

    args, _ = parsed(command("api"))
    code = python_code(health_test("api"))
    compile(code, "api healthcheck", "exec")
    assert f"http://127.0.0.1:{args.port}/readyz" in code
    assert "/readyz" in {getattr(route, "path", None) for route in router.routes}


@pytest.mark.parametrize(("service", "node"), [("worker", "worker"), ("loader", "loader")])
def test_a_worker_is_healthy_when_its_node_answers_a_ping(service: str, node: str) -> None:
    from celery.app.utils import find_app

    from procexec.workers.tasks import app

    words = shell_words(health_test(service))
    assert words[0] == "celery" and words[3:5] == ["inspect", "ping"], words
    assert words[1] == "-A" and find_app(words[2]) is app, "the health check pings another app"
    # the node the command names: `-n NODE@%h` there, `-d NODE@$HOSTNAME` here
    assert words[words.index("-d") + 1] == f"{node}@$HOSTNAME", words
    # the `celery` script is installed with procexec (celery is one of its requirements)
    scripts = importlib.metadata.entry_points(group="console_scripts", name="celery")
    assert {script.dist.name for script in scripts if script.dist} == {"celery"}
    requirements = importlib.metadata.requires("procexec") or []
    assert any(re.match(r"celery\b", requirement) for requirement in requirements)


def test_the_beat_is_healthy_while_its_process_runs() -> None:
    code = python_code(health_test("beat"))
    compile(code, "beat healthcheck", "exec")
    # the `procexec` script's process (its name in /proc/PID/comm) running `beat`
    assert '"procexec"' in code and 'b"beat"' in code and "/proc" in code


def test_flower_is_healthy_when_it_answers_without_the_login() -> None:
    from flower.urls import handlers
    from tornado.web import URLSpec

    _, options = parsed(command("flower"))
    code = python_code(health_test("flower"))
    compile(code, "flower healthcheck", "exec")
    assert f"http://127.0.0.1:{flower_options(options).port}/healthcheck" in code
    routes = {
        (spec.regex.pattern, spec.handler_class)
        if isinstance(spec, URLSpec)
        else (f"{spec[0]}$", spec[1])
        for spec in handlers
    }
    healthcheck = dict(routes)["/healthcheck$"]
    # a GET that asks for the login is wrapped by tornado's `authenticated`
    assert not hasattr(healthcheck.get, "__wrapped__"), "Flower's /healthcheck asks for a login"


def test_mongo_and_redis_checks_ask_the_servers() -> None:
    assert shell_words(health_test("mongo"))[0] == "mongosh"
    assert "ping" in health_test("mongo")[-1]
    assert shell_words(health_test("redis"))[:2] == ["redis-cli", "ping"]


# --- scaling, volumes, persistence


@pytest.mark.parametrize("service", ["worker", "loader"])
def test_the_workers_scale(service: str) -> None:
    """`docker compose up --scale worker=N`: no fixed name, no fixed host port."""
    assert "container_name" not in SERVICES[service]
    for port in SERVICES[service].get("ports") or []:
        published = "published" in port if isinstance(port, dict) else ":" in str(port)
        assert not published, f"{service} publishes {port} on the host"


def _named_volumes(service: str) -> set[str]:
    names = set()
    for volume in SERVICES[service].get("volumes") or []:
        source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
        assert source and not source.startswith((".", "/", "~")), f"{service}: {volume}"
        names.add(source)
    return names


def test_the_volumes_are_named_and_declared() -> None:
    used = {name for service in SERVICES for name in _named_volumes(service)}
    assert used == set(COMPOSE.get("volumes") or {})
    assert "/data/db" in str(SERVICES["mongo"]["volumes"])


def test_redis_persists_its_data() -> None:
    redis = SERVICES["redis"]
    words = redis["command"] if isinstance(redis["command"], list) else redis["command"].split()
    assert words[0] == "redis-server"
    assert words[words.index("--appendonly") + 1] == "yes"
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])
    assert _named_volumes("redis")


# --- the image


def _dockerfile() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, "an instruction before FROM"
        stages[-1].append((keyword.upper(), " ".join(rest.split())))
    return stages


STAGES = _dockerfile()
IMAGE = STAGES[-1]


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            found.update(word.split("=", 1) for word in shlex.split(rest))
    return found


def _sources(rest: str) -> list[str]:
    words = [word for word in shlex.split(rest) if not word.startswith("--")]
    return words[:-1]


def test_the_image_runs_as_a_user_of_its_own() -> None:
    users = [rest for keyword, rest in IMAGE if keyword == "USER"]
    assert users, "the image runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    runs = " ".join(rest for keyword, rest in IMAGE if keyword == "RUN")
    created = re.search(rf"useradd (?:.* )?--uid \S+ (?:.* )?{user}\b", runs)
    assert created, f"the user {user} is not made with a fixed uid"
    assert f"chown {user}:{user} /data" in runs


def test_the_image_s_data_folder_is_its_user_s() -> None:
    env = _env(IMAGE)
    assert env["PROCEXEC_DATA_DIR"] == "/data"
    assert {name for name in env if name.startswith("PROCEXEC_")} <= SETTINGS


def test_the_image_builds_every_package_folder() -> None:
    """The wheel is built from the folders copied in: each one pyproject.toml maps, its
    readme, and pyproject.toml itself."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {
        source.rstrip("/")
        for stage in STAGES
        for keyword, rest in stage
        if keyword == "COPY" and "--from" not in rest
        for source in _sources(rest)
    }
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    needed = folders | {"pyproject.toml", project["project"]["readme"]}
    # a folder is copied with the folder holding it (`COPY src src` copies src/procexec)
    assert {path for path in needed if not _copied(Path(path), copied)} == set()
    # src/procexec's links to the parts (`api -> ../../api`) land in copied folders
    for folder in folders:
        for link in (ROOT / folder).iterdir():
            if link.is_symlink():
                target = link.resolve().relative_to(ROOT)
                assert _copied(target, copied), f"{link.relative_to(ROOT)} -> {target}"


def _copied(path: Path, copied: set[str]) -> bool:
    return any(path.is_relative_to(source) for source in copied)


def _ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(
        fnmatch.fnmatch(path, pattern.rstrip("/")) or path.startswith(pattern.rstrip("/") + "/")
        for pattern in patterns
        if not pattern.startswith("!")
    )


def test_what_the_image_copies_is_there_and_not_ignored() -> None:
    sources = [
        source
        for stage in STAGES
        for keyword, rest in stage
        if keyword == "COPY" and "--from" not in rest
        for source in _sources(rest)
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not _ignored(source.rstrip("/")), f"COPY {source}: .dockerignore leaves it out"


def test_your_processes_folder_is_on_the_image_s_path() -> None:
    copies = [shlex.split(rest) for keyword, rest in IMAGE if keyword == "COPY"]
    target = next(words[-1] for words in copies if words[-2].rstrip("/") == "processes")
    assert target.rstrip("/") in _env(IMAGE)["PYTHONPATH"].split(":")
    assert (ROOT / "processes" / "README.md").exists()


def test_the_image_is_stamped_with_the_commit_compose_builds() -> None:
    """The build context has no .git: compose passes the commit as a build argument, which the
    build stage hands to the wheel's build (src/procexec/_stamp.py reads it), and nothing of it
    stays in the image (an ARG of the build stage, no ENV)."""
    name = _stamp.COMMIT_VARIABLE
    assert not name.startswith("PROCEXEC_"), "procexec refuses PROCEXEC_* it does not read"
    for service in PROCEXEC:
        args = SERVICES[service]["build"]["args"]
        assert references(args) == [(name, ":-", "unknown")], service
        assert interpolate(args, {name: "0123abc"}) == {name: "0123abc"}
    (build,) = [stage for stage in STAGES if any("pip wheel" in rest for _, rest in stage)]
    assert build is not IMAGE
    mentions = [(keyword, rest) for keyword, rest in build if name in rest]
    assert [keyword for keyword, _ in mentions] == ["ARG", "RUN"], mentions
    assert mentions[0][1].split("=")[0] == name
    assert "pip wheel" in mentions[1][1]
    assert [(keyword, rest) for keyword, rest in IMAGE if name in rest] == []
    assert name not in _env(IMAGE)


def test_the_image_s_command_is_procexec_s() -> None:
    commands = [rest for keyword, rest in IMAGE if keyword == "CMD"]
    assert commands
    args, _ = parsed(load(commands[-1]))
    assert args.command == "api"


def test_the_operators_guide_describes_each_service() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide[guide.index("## Deploying with compose") :]
    section = section[: section.index("\n## ", 1)]
    assert {name for name in SERVICES if f"| `{name}` |" not in section} == set()
