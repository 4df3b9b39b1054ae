"""Build a Python policy project into a tiergate component.

    python -m tiergate_policy.build [PROJECT] [-o OUT.wasm]

PROJECT (default: the current directory) holds a `pyproject.toml` with the
policy's `[project] name` and `version` and `[tool.tiergate] policy =
"module:Class"`. The component is built by componentize-py against the
contract this SDK carries, with every WASI interface stubbed out: the policy
imports only the contract's context, so it has no clock, randomness, file or
environment even before the host's sandbox closes them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

WORLD = "tier-policy"
COMPONENTIZE_PY = "0.25.1"
SDK_VERSION = "0.1.0"

# What CPython needs beyond the host's defaults (16 MiB, 2,000,000 fuel and
# 500 µs of CPU a call), which the host grants up to its maxima. seed-tiers
# starts in 12.8 MiB, uses about 5,000,000 fuel a decision and 6 to 7 ms of
# CPU in a fresh sandbox (up to 27 ms when 16 callers share 2 cores): these
# leave a policy room to grow, and keep its ordinary decisions out of its
# tenant's CPU budget, which is for calls that loop. A project may ask for other amounts in
# `[tool.tiergate.needs]`.
NEEDS = {"memory_bytes": 32 << 20, "fuel": 25_000_000, "cpu_per_call_us": 20_000}


def with_custom_section(component: bytes, name: str, payload: bytes) -> bytes:
    """`component` with a top-level custom section `name` holding `payload`."""

    def leb128(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    encoded = name.encode()
    body = leb128(len(encoded)) + encoded + payload
    return component + b"\x00" + leb128(len(body)) + body
_SDK = Path(__file__).resolve().parent
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


class BuildError(Exception):
    """Why a policy could not be built, and what to do about it."""


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    version: str
    module: str
    cls: str
    needs: dict[str, int]

    @classmethod
    def read(cls, root: Path) -> Project:
        manifest = root / "pyproject.toml"
        try:
            doc = tomllib.loads(manifest.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BuildError(f"{manifest} not found: a Python policy project needs one") from None
        except tomllib.TOMLDecodeError as e:
            raise BuildError(f"{manifest}: {e}") from None
        project = doc.get("project", {})
        name, version = project.get("name"), project.get("version")
        target = doc.get("tool", {}).get("tiergate", {}).get("policy")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise BuildError(f"{manifest}: [project] name must be a lower-case policy name")
        if not isinstance(version, str) or not version:
            raise BuildError(f"{manifest}: [project] version is missing")
        if not isinstance(target, str) or target.count(":") != 1:
            raise BuildError(
                f'{manifest}: set [tool.tiergate] policy = "module:Class", the policy to build'
            )
        module, klass = target.split(":")
        if not module.isidentifier() or not klass.isidentifier():
            raise BuildError(f"{manifest}: policy {target!r} is not module:Class")
        needs = dict(NEEDS)
        for key, value in doc["tool"]["tiergate"].get("needs", {}).items():
            if key not in NEEDS:
                raise BuildError(
                    f"{manifest}: [tool.tiergate.needs] has no `{key}`: use {', '.join(NEEDS)}"
                )
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise BuildError(f"{manifest}: [tool.tiergate.needs] {key} must be a whole number above 0")
            needs[key] = value
        return cls(root, name, version, module, klass, needs)


def componentize_py() -> str:
    """The componentize-py beside this Python, or on PATH."""
    beside = Path(sys.executable).with_name("componentize-py")
    if beside.exists():
        return str(beside)
    found = shutil.which("componentize-py")
    if found is None:
        raise BuildError(
            f"componentize-py is not installed: run `pip install componentize-py=={COMPONENTIZE_PY}`"
        )
    return found


def build(project: Project, out: Path) -> Path:
    """Builds `project` into the component `out`."""
    tool = componentize_py()
    with tempfile.TemporaryDirectory(prefix="tiergate-build-") as scratch:
        entry = Path(scratch) / "tiergate_entry.py"
        entry.write_text(
            "# Written by tiergate_policy.build: exports the policy as the contract's\n"
            "# `policy` interface.\n"
            "from tiergate_policy._guest import export\n"
            f"from {project.module} import {project.cls} as _Policy\n\n"
            f"Policy = export(_Policy, {project.name!r}, {project.version!r})\n",
            encoding="utf-8",
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [
            tool,
            "--wit-path",
            str(_SDK / "wit" / "v0.1.0"),
            "--world",
            WORLD,
            "componentize",
            "--stub-wasi",
            "--python-path",
            scratch,
            "--python-path",
            str(project.root),
            "--python-path",
            str(_SDK.parent),
            "--output",
            str(out),
            "tiergate_entry",
        ]
        # No Rust backtrace in what the author reads: the Python one says it.
        env = {**os.environ, "RUST_BACKTRACE": "0"}
        done = subprocess.run(command, cwd=project.root, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(
                f"componentize-py could not build {project.name}:\n{done.stderr.strip() or done.stdout.strip()}"
            )
        version = subprocess.run([tool, "--version"], capture_output=True, text=True)
        about = {
            "language": "python",
            "toolchain": version.stdout.strip() or "componentize-py",
            "sdk": f"tiergate-policy {SDK_VERSION}",
            "needs": project.needs,
        }
        out.write_bytes(
            with_custom_section(out.read_bytes(), "tiergate:build", json.dumps(about).encode())
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tiergate_policy.build",
        description="Build a Python tiergate policy into a WebAssembly component.",
    )
    parser.add_argument("project", nargs="?", default=".", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="default: PROJECT/target/NAME.wasm")
    args = parser.parse_args(argv)
    try:
        project = Project.read(args.project.resolve())
        out = args.output or project.root / "target" / f"{project.name}.wasm"
        print(f"building {project.name} {project.version} with componentize-py", file=sys.stderr)
        built = build(project, out.resolve())
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(built)
    return 0


if __name__ == "__main__":
    sys.exit(main())
