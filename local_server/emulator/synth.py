"""The CloudFormation template the emulator runs: ``cdk synth``'s, synthesized once per source state.

The template is the stack's own (``cdk.app.build_app``, cdk.json's feature flags), with asset bundling
skipped: the emulator runs the handlers from this checkout, so it needs the template, not the zip, and
skipping the bundle keeps the synth offline (no pip). Synthesizing costs ~15-30 s of CPU (the CDK runs in
a Node child process), so the result is cached under ``build/emulator/`` by a hash of everything that
shapes the template (``cdk/``, ``shared/``, ``cdk.json``, ``pyproject.toml``, the context); a ``cdk.out``
template from ``make synth`` can be given instead (``--template``).

The apps in the template are the example apps file's: the emulator's apps come from its own config
(``local_server/emulator/template.py`` puts them where the template puts ``SOCKLESS_APPS``), so one
synth serves every config and the cache does not depend on the apps.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / "build" / "emulator"
# What the template depends on. functions/ is left out: with bundling skipped the handlers' sources only
# change the asset hash, which the emulator never reads.
SOURCES = ("cdk", "shared")
FILES = ("cdk.json", "pyproject.toml")
# cdk/cloudfront/*.js is read by the stack; tests of it are not.
SUFFIXES = (".py", ".js", ".json")
SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}
STACK_ID = "Sockless"


def source_hash(context: dict[str, Any], root: Path = REPO_ROOT) -> str:
    """A hash of the sources and the context that determine the template."""
    digest = hashlib.sha256(json.dumps(context, sort_keys=True).encode() + b"\0")
    paths: list[Path] = [root / name for name in FILES]
    for folder in SOURCES:
        paths.extend(
            p
            for p in (root / folder).rglob("*")
            if p.suffix in SUFFIXES and p.is_file() and "__pycache__" not in p.parts and ".test." not in p.name
        )
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def template(context: dict[str, Any] | None = None, *, cache_dir: Path = CACHE_DIR) -> tuple[dict[str, Any], Path]:
    """The synthesized template for ``context`` (CDK context values, e.g. ``{"stage_name": "v1"}``) and the
    file it was read from: the cached one when current, else a fresh synth (in a child process, under a
    file lock so concurrent emulators synthesize once)."""
    context = {**SKIP_BUNDLING, **(context or {})}
    path = cache_dir / f"{source_hash(context)}.template.json"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with open(cache_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                _synthesize(context, path)
    return json.loads(path.read_text(encoding="utf-8")), path


def _synthesize(context: dict[str, Any], path: Path) -> None:
    """``cdk synth`` in a child process (the CDK's jsii runtime stays out of the emulator's process). The
    child writes the cache file itself, atomically: a parent stopped meanwhile still leaves it for the next."""
    subprocess.run(
        [sys.executable, "-m", "local_server.emulator.synth", json.dumps(context), str(path)],
        cwd=REPO_ROOT,
        check=True,
        env={**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_CLI_TELEMETRY": "1"},
    )


def _main(context_json: str, out: str) -> None:
    from cdk.app import build_app

    app, stack = build_app(json.loads(context_json), nag=False)
    assembly = app.synth()
    template = assembly.get_stack_artifact(stack.artifact_id).template
    path = Path(out)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=path.parent, delete=False, encoding="utf-8") as tmp:
        json.dump(template, tmp, indent=1, sort_keys=True)
    try:
        os.replace(tmp.name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp.name)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m local_server.emulator.synth CONTEXT_JSON OUT")
    _main(sys.argv[1], sys.argv[2])
