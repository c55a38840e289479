"""Two test hosts as Linux network namespaces joined by one veth pair (root only).

Several nodes can live on one host (same address, different ports), so
taking the link down partitions the cluster into the nodes of host A and
those of host B. Both namespaces are created by the test that uses them and
deleted afterwards; their addresses exist only inside them, so no traffic
leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


def can_make_namespaces() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"lbcprobe{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return True


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class TwoHosts:
    subnet: str = "10.213.7"
    tag: str = field(default_factory=lambda: str(os.getpid() % 100000))
    made: list[str] = field(default_factory=list)

    def ns(self, host: int) -> str:
        return f"lbc{self.tag}h{host}"

    def address(self, host: int) -> str:
        return f"{self.subnet}.{host + 1}"

    def dev(self, host: int) -> str:
        return f"lbv{self.tag}h{host}"

    def up(self) -> TwoHosts:
        try:
            for host in (0, 1):
                ip("netns", "add", self.ns(host))
                self.made.append(self.ns(host))
                ip("-n", self.ns(host), "link", "set", "lo", "up")
            ip("link", "add", self.dev(0), "netns", self.ns(0), "type", "veth",
               "peer", "name", self.dev(1), "netns", self.ns(1))
            for host in (0, 1):
                ip("-n", self.ns(host), "addr", "add", f"{self.address(host)}/24",
                   "dev", self.dev(host))
                ip("-n", self.ns(host), "link", "set", self.dev(host), "up")
        except BaseException:
            self.down()
            raise
        return self

    def cut(self) -> None:
        ip("-n", self.ns(0), "link", "set", self.dev(0), "down")

    def heal(self) -> None:
        ip("-n", self.ns(0), "link", "set", self.dev(0), "up")

    def wrapper(self, host: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]

    def down(self) -> None:
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.made.clear()
