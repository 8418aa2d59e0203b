"""Hosts of a test's own on one machine: Linux network namespaces joined by a bridge, each with
its address, so that every connection between them crosses a network (veth pairs and a bridge),
none goes over a shared loopback. Needs root and iproute2 (`ip netns`, `ip link`)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass, field

import pytest


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def _must(*args: str) -> None:
    result = _ip(*args)
    assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr.strip()}"


def unsupported() -> str | None:
    """Why namespaces cannot be made here, or None: root, `ip`, and a namespace that works."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"pxprobe{os.getpid() % 100000}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass
class Network:
    """A bridge on the machine and, per host, a namespace with one veth into it."""

    tag: str = field(default_factory=lambda: f"px{os.getpid() % 1000}{random.randrange(100)}")
    subnet: str = field(
        default_factory=lambda: f"10.{random.randrange(100, 250)}.{random.randrange(250)}"
    )
    hosts: dict[str, str] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    def __enter__(self) -> Network:
        why = unsupported()
        if why is not None:
            pytest.skip(f"no network namespaces here: {why}")
        _must("link", "add", self.bridge, "type", "bridge")
        _must("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _must("link", "set", self.bridge, "up")
        return self

    def host(self, name: str) -> str:
        """A new host named `name` (its namespace `<tag>-<name>`); its address."""
        number = len(self.hosts) + 2
        namespace, outside, inside = f"{self.tag}-{name}", f"{self.tag}v{number}", "eth0"
        _must("netns", "add", namespace)
        _must("link", "add", outside, "type", "veth", "peer", "name", f"{self.tag}p{number}")
        _must("link", "set", f"{self.tag}p{number}", "netns", namespace)
        _must("-n", namespace, "link", "set", f"{self.tag}p{number}", "name", inside)
        _must("link", "set", outside, "master", self.bridge)
        _must("link", "set", outside, "up")
        address = f"{self.subnet}.{number}"
        _must("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        _must("-n", namespace, "link", "set", inside, "up")
        _must("-n", namespace, "link", "set", "lo", "up")
        self.hosts[name] = address
        return address

    def on(self, name: str, argv: list[str]) -> list[str]:
        """`argv` run on host `name`."""
        return ["ip", "netns", "exec", f"{self.tag}-{name}", *argv]

    def __exit__(self, *exc: object) -> None:
        for name in self.hosts:
            _ip("netns", "del", f"{self.tag}-{name}")  # its veth pair goes with it
        _ip("link", "del", self.bridge)
