"""A small Dockerfile reader (stages and instructions), and the image's install commands.

The commands are written here once: a test checks that the Dockerfile runs exactly these, and
another runs them in a clean virtual environment, since no Docker engine is at hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.tools import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

#: Paths inside the image: the sources, the wheels, the final and the build environments.
SRC, WHEELS, VENV, BUILD = "/src", "/wheels", "/opt/venv", "/opt/build"

#: `{src}`, `{wheels}`, `{venv}` and `{build}` are the paths above in the image, temporary ones
#: in tests. The build stage's own venv builds the wheels: the pinned build backend, then every
#: dependency with the hashes of requirements/image.txt, then the project (and, in the
#: Dockerfile, the RULE_PACKAGES after it).
MAKE_BUILD_VENV = "python -m venv {build}"
INSTALL_BACKEND = (
    "{build}/bin/pip install --require-hashes --no-deps -r {src}/requirements/build.txt"
)
BUILD_DEPENDENCIES = (
    "{build}/bin/pip wheel --require-hashes --no-deps --wheel-dir {wheels} "
    "-r {src}/requirements/image.txt"
)
BUILD_PROJECT = "{build}/bin/pip wheel --no-build-isolation --no-deps --wheel-dir {wheels} {src}"
MAKE_VENV = "python -m venv {venv}"
INSTALL = "{venv}/bin/pip install --no-cache-dir --no-index --no-deps {wheels}/*.whl"
CHECK = "{venv}/bin/pip check"
SMOKE = "{venv}/bin/pod-identity-webhook --version"
DROP_PIP = "{venv}/bin/pip uninstall --yes pip setuptools"
BUILD_STAGE_COMMANDS = (MAKE_BUILD_VENV, INSTALL_BACKEND, BUILD_DEPENDENCIES, BUILD_PROJECT)
FINAL_STAGE_COMMANDS = (MAKE_VENV, INSTALL, CHECK, SMOKE, DROP_PIP)


def in_image(command: str) -> str:
    return command.format(src=SRC, wheels=WHEELS, venv=VENV, build=BUILD)


@dataclass
class Instruction:
    keyword: str
    value: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form ENTRYPOINT/CMD/RUN, else None."""
        try:
            parsed = json.loads(self.value)
        except ValueError:
            return None
        if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
            return parsed
        return None

    def pairs(self) -> dict[str, str]:
        """KEY=value pairs of ENV, LABEL and ARG (quotes removed)."""
        found = re.findall(r'([A-Za-z0-9_.-]+)=("(?:[^"\\]|\\.)*"|\S*)', self.value)
        return {key: value[1:-1] if value.startswith('"') else value for key, value in found}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def runs(self) -> str:
        return "\n".join(i.value for i in self.all("RUN"))


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]
    directives: list[str]

    def resolve(self, text: str) -> str:
        """`${NAME}` and `$NAME` of global ARGs replaced by their defaults."""

        def value(match: re.Match[str]) -> str:
            return self.global_args.get(match.group(1) or match.group(2), match.group(0))

        return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def logical_lines(text: str) -> list[str]:
    """Lines with continuations joined and comments dropped (parser directives kept apart)."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") and not current:
            if stripped.startswith("# syntax=") and not lines:
                lines.append(stripped)
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def read(path: Path = DOCKERFILE) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    directives: list[str] = []
    for line in logical_lines(path.read_text(encoding="utf-8")):
        if line.startswith("# "):
            directives.append(line[2:])
            continue
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        value = value.strip()
        if keyword == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before FROM, not {keyword}"
            name, _, default = value.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, value))
    return Dockerfile(global_args, stages, directives)


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
