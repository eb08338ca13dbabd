"""The images the node tier runs, built with the project's own scripts and cached by content.

- the Debian base (tools/image/base.sh, with this host's extra CA certificates);
- the webhook, from the project's Dockerfile on that base (tools/image/image.sh build);
- a Pod image with the AWS CLI and boto3 from Debian, on the same base;
- the sandbox ("pause") image, a static Go binary.

Each image is tagged with a hash of everything it is made of, so an unchanged image is
reused and a changed one rebuilt; each is saved once as an archive that the node's containerd
imports.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.node.node import PAUSE_IMAGE

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
IMAGE_SCRIPT = REPO / "tools" / "image" / "image.sh"
BASE_SCRIPT = REPO / "tools" / "image" / "base.sh"
INPUTS_LABEL = "io.github.pod-identity-webhook.inputs"
BUILD_TIMEOUT = 1800


@dataclass(frozen=True)
class Images:
    base: str
    webhook: str
    aws_client: str
    pause: str
    archives: tuple[Path, ...]


def _run(argv: list[str], log: Path, *, cwd: Path = REPO, env: dict[str, str] | None = None) -> str:
    """stdout of a build step; its stderr is appended to `log`, and named when it fails."""
    with log.open("ab") as output:
        output.write(f"$ {' '.join(argv)}\n".encode())
        output.flush()
        result = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=output,
            check=False,
            cwd=cwd,
            env=env,
            timeout=BUILD_TIMEOUT,
        )
    if result.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"{' '.join(argv[:3])} failed: {' '.join(tail)} (see {log})")
    return result.stdout.decode(errors="replace")


def _hash_files(paths: list[Path], *extra: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0")
        digest.update(path.read_bytes())
    for value in extra:
        digest.update(value.encode() + b"\0")
    return digest.hexdigest()[:16]


def webhook_inputs() -> list[Path]:
    """The files the Dockerfile reads (its .dockerignore allow-list), without caches."""
    files = [
        REPO / "Dockerfile",
        REPO / ".dockerignore",
        REPO / "pyproject.toml",
        REPO / "README.md",
        REPO / "requirements" / "build.txt",
        REPO / "requirements" / "image.txt",
    ]
    for directory in [REPO / "webhook", *REPO.glob("examples/*/src")]:
        files += [p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files += list(REPO.glob("examples/*/pyproject.toml")) + list(REPO.glob("examples/*/README.md"))
    return files


class Builder:
    def __init__(self, cache: Path, log: Path) -> None:
        self.cache = cache
        self.log = log
        cache.mkdir(parents=True, exist_ok=True)

    def label(self, tag: str) -> str:
        return _run([str(IMAGE_SCRIPT), "label", tag, INPUTS_LABEL], self.log).strip()

    def build(
        self, tag: str, inputs: str, context: Path, *, file: Path, build_args: dict[str, str]
    ) -> str:
        """Build unless an image with the same inputs exists; returns the tag."""
        if self.label(tag) == inputs:
            return tag
        argv = [
            str(IMAGE_SCRIPT),
            "build",
            "--file",
            str(file),
            "--label",
            f"{INPUTS_LABEL}={inputs}",
        ]
        for name, value in build_args.items():
            argv += ["--build-arg", f"{name}={value}"]
        _run([*argv, tag, str(context)], self.log)
        self.prune(tag)
        return tag

    def prune(self, tag: str) -> None:
        """Remove the images this tier built before for the same repository (other inputs),
        and their archives: each change of the webhook would otherwise leave 450 MB behind.
        Only images carrying the tier's inputs label go; nothing else of the repository."""
        repository = tag.rpartition(":")[0]
        listed = _run([str(IMAGE_SCRIPT), "tags", repository], self.log).split()
        stale = [t for t in listed if t != tag and self.label(t)]
        if stale:
            _run([str(IMAGE_SCRIPT), "remove", *stale], self.log)
        name = repository.rsplit("/", 1)[-1]
        for archive in self.cache.glob(f"{name}-*.tar"):
            # `name-<16 hex>.tar` exactly: another image's name may start with this one's.
            inputs = archive.name[len(name) + 1 : -len(".tar")]
            if len(inputs) == 16 and all(c in "0123456789abcdef" for c in inputs):
                archive.unlink()

    def archive(self, tag: str, inputs: str) -> Path:
        name = tag.rsplit("/", 1)[-1].split(":", maxsplit=1)[0]
        path = self.cache / f"{name}-{inputs}.tar"
        if not path.exists():
            partial = path.with_suffix(".partial")
            _run([str(IMAGE_SCRIPT), "save", tag, str(partial)], self.log)
            partial.rename(path)
        return path


def base_image(log: Path) -> str:
    """tools/image/base.sh with this host's extra CA certificates (reused when unchanged)."""
    lines = _run([str(BASE_SCRIPT), "--host-ca"], log).strip().splitlines()
    return lines[-1]


def image_id(tag: str, log: Path) -> str:
    return _run(
        [str(IMAGE_SCRIPT), "label", tag, "io.github.pod-identity-webhook.base-inputs"], log
    ).strip()


def build_all(cache: Path, log: Path, workdir: Path) -> Images:
    builder = Builder(cache, log)
    base = base_image(log)
    base_inputs = image_id(base, log)

    inputs = _hash_files(webhook_inputs(), base_inputs)
    webhook = builder.build(
        f"localhost/pod-identity-webhook:node-{inputs}",
        inputs,
        REPO,
        file=REPO / "Dockerfile",
        build_args={"BASE_IMAGE": base},
    )
    webhook_archive = builder.archive(webhook, inputs)

    client_dir = HERE / "images" / "aws-client"
    client_inputs = _hash_files(list(client_dir.iterdir()), base_inputs)
    aws_client = builder.build(
        f"localhost/pod-identity-webhook-node-aws-client:{client_inputs}",
        client_inputs,
        client_dir,
        file=client_dir / "Containerfile",
        build_args={"BASE_IMAGE": base},
    )
    client_archive = builder.archive(aws_client, client_inputs)

    pause_dir = HERE / "images" / "pause"
    pause_inputs = _hash_files(list(pause_dir.iterdir()))
    if builder.label(PAUSE_IMAGE) != pause_inputs:
        context = workdir / "pause-context"
        context.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-trimpath"}
        _run(
            ["go", "build", "-ldflags=-s -w", "-o", str(context / "pause"), "."],
            log,
            cwd=pause_dir,
            env=env,
        )
        (context / "Containerfile").write_bytes((pause_dir / "Containerfile").read_bytes())
        builder.build(
            PAUSE_IMAGE, pause_inputs, context, file=context / "Containerfile", build_args={}
        )
    pause_archive = builder.archive(PAUSE_IMAGE, pause_inputs)
    return Images(
        base, webhook, aws_client, PAUSE_IMAGE, (pause_archive, webhook_archive, client_archive)
    )
