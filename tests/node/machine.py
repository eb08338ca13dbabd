"""What the node tier changes on the machine, recorded before and undone after.

The node runs in a network namespace of its own, so its addresses, bridge, routes and iptables
chains (the kubelet's and the CNI plugins') vanish with that namespace. What cannot be kept
inside it is undone here, by the names the tier gave it: mounts under the tier's directory,
the Pods' `cni-*` network namespaces, the cgroups under the tier's cgroup root, and the kernel
settings the kubelet sets (they are global, not per network namespace).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: What the kubelet writes at start-up (container_manager_linux.go, setupKernelTunables).
KUBELET_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")


def run(*argv: str, check: bool = True, timeout: float = 30) -> str:
    """stdout of a command; stderr in the error when it fails and `check` is set."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(names: tuple[str, ...] = KUBELET_SYSCTLS) -> dict[str, str]:
    values = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text(encoding="ascii").strip()
    return values


def write_sysctls(values: dict[str, str]) -> list[str]:
    """Write each value back; returns the ones that could not be written."""
    failed = []
    for name, value in values.items():
        try:
            if _sysctl_path(name).read_text(encoding="ascii").strip() != value:
                _sysctl_path(name).write_text(value + "\n", encoding="ascii")
        except OSError as exc:
            failed.append(f"{name}: {exc}")
    return failed


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory`, deepest first."""
    prefix = str(directory.resolve())
    points = []
    for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all(directory: Path) -> list[str]:
    """Unmount everything below `directory` (lazily when busy); returns what remains."""
    for _ in range(3):
        points = mounts_under(directory)
        if not points:
            return []
        for point in points:
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    return mounts_under(directory)


def netns_names() -> set[str]:
    try:
        return {entry.name for entry in NETNS_DIR.iterdir()}
    except FileNotFoundError:
        return set()


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def cgroup_dirs(cgroup_root: str) -> list[Path]:
    """Every directory of `cgroup_root` in every v1 hierarchy (or the v2 tree), deepest first."""
    relative = cgroup_root.strip("/")
    found: list[Path] = []
    candidates = [CGROUP_ROOT / relative]
    with contextlib.suppress(OSError):
        candidates += [entry / relative for entry in CGROUP_ROOT.iterdir() if entry.is_dir()]
    for top in candidates:
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def remove_cgroups(cgroup_root: str, timeout: float = 15) -> list[Path]:
    """rmdir the tier's cgroups, deepest first, once their processes are gone."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for directory in cgroup_dirs(cgroup_root):
            try:
                directory.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                left.append(directory)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.3)


@dataclass
class MachineState:
    """Kernel settings and network namespaces as the tier found them."""

    sysctls: dict[str, str] = field(default_factory=read_sysctls)
    netns: set[str] = field(default_factory=netns_names)

    def restore_sysctls(self) -> list[str]:
        return write_sysctls(self.sysctls)

    def changed_sysctls(self) -> dict[str, tuple[str, str]]:
        now = read_sysctls(tuple(self.sysctls))
        return {k: (v, now.get(k, "?")) for k, v in self.sysctls.items() if now.get(k) != v}


#: What a running node tier has changed, for the next run to undo if this one was killed.
RECORD = Path("/run/pod-identity-webhook-node-tier.json")


@dataclass(frozen=True)
class Record:
    """The names a run gives what it makes, and what it found."""

    netns: str
    host_if: str
    workdir: str
    cgroup_root: str
    containerd_socket: str
    sysctls: dict[str, str]
    netns_before: list[str]

    def save(self) -> None:
        RECORD.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @staticmethod
    def clear() -> None:
        RECORD.unlink(missing_ok=True)


def processes_with(needle: bytes) -> list[int]:
    """PIDs whose command line contains `needle` (a path of the run: unique to it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_cgroup_processes(cgroup_root: str) -> None:
    for directory in cgroup_dirs(cgroup_root):
        with contextlib.suppress(OSError, ValueError):
            for pid in (directory / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def sweep() -> list[str]:
    """Undo what a killed run left (its record says what it made); returns what was done."""
    if not RECORD.exists():
        return []
    record = Record(**json.loads(RECORD.read_text(encoding="utf-8")))
    done = [f"swept a previous run's node ({record.netns})"]
    for needle in (record.containerd_socket, record.workdir):
        for pid in processes_with(needle.encode()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    kill_cgroup_processes(record.cgroup_root)
    time.sleep(0.5)
    unmount_all(Path(record.workdir))
    for name in netns_names() - set(record.netns_before):
        if name.startswith("cni-") or name == record.netns:
            delete_netns(name)
    run("ip", "link", "delete", record.host_if, check=False)
    remove_cgroups(record.cgroup_root, timeout=5)
    write_sysctls(record.sysctls)
    shutil.rmtree(Path(record.workdir) / "containerd", ignore_errors=True)
    Record.clear()
    return done
