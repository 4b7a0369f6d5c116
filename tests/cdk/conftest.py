"""Synthesized stacks for the CDK assertion tests, one per store variant, built once per session.

Each synthesis runs the whole app as ``cdk synth`` does — cdk.json's feature flags, cdk-nag's AwsSolutions
checks (an unacknowledged finding raises here) — except asset bundling, which is skipped
(``aws:cdk:bundling-stacks: []``) so no synthesis needs pip; the ``bundle`` fixture builds the real bundle
once for the tests that look at it (tests/cdk/test_bundle.py, the size rule of test_deploy_readiness.py).
Helpers find resources by what they are (a function by its handler, a route by its key), never by hashed
logical ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from cdk.app import build_app
from cdk.components.bundle import RUNTIME_DEPENDENCIES, WHEELHOUSE_ENV, BundleSpec, build_bundle, pinned_requirements
from cdk.components.functions import ARCHITECTURE, RUNTIME
from cdk.stack import SocklessStack

SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}
REPO_ROOT = Path(__file__).resolve().parents[2]
# The bundle the stack deploys (the DynamoDB variant's: the Valkey one adds redis).
BUNDLE_SPEC = BundleSpec(RUNTIME, ARCHITECTURE, pinned_requirements(RUNTIME_DEPENDENCIES))


@dataclass
class Synth:
    """A synthesized stack: the CDK assertions ``template`` and its plain JSON, with lookup helpers."""

    stack: SocklessStack
    template: Template
    json: dict[str, Any]

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.json["Resources"])

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == type_}

    def one(self, type_: str, **properties: Any) -> tuple[str, dict[str, Any]]:
        """The single resource of ``type_`` whose properties include ``properties`` (exact values)."""
        found = [
            (k, v)
            for k, v in self.of_type(type_).items()
            if all(v.get("Properties", {}).get(name) == value for name, value in properties.items())
        ]
        assert len(found) == 1, f"expected one {type_} with {properties}, found {[k for k, _ in found]}"
        return found[0]

    def function(self, handler: str) -> tuple[str, dict[str, Any]]:
        return self.one("AWS::Lambda::Function", Handler=handler)

    def role_of(self, handler: str) -> str:
        _, function = self.function(handler)
        return str(function["Properties"]["Role"]["Fn::GetAtt"][0])

    def statements(self, handler: str) -> list[dict[str, Any]]:
        """Every IAM statement of the policies attached to the role of ``handler``'s function."""
        role = self.role_of(handler)
        out: list[dict[str, Any]] = []
        for policy in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"]["Roles"]:
                out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
        for inline in self.resources[role]["Properties"].get("Policies", []):
            out.extend(inline["PolicyDocument"]["Statement"])
        return out

    def environment(self, handler: str) -> dict[str, Any]:
        _, function = self.function(handler)
        return dict(function["Properties"]["Environment"]["Variables"])

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.resolve(construct.node.default_child.logical_id))


def synthesize(context: dict[str, Any] | None = None) -> Synth:
    """Synthesize the app like ``cdk synth`` (cdk-nag included; raises on an unacknowledged finding)."""
    app, stack = build_app({**SKIP_BUNDLING, **(context or {})})
    app.synth()
    template = Template.from_stack(stack)
    return Synth(stack, template, dict(template.to_json()))


@pytest.fixture(scope="session")
def dynamodb() -> Synth:
    return synthesize({"store": "dynamodb"})


@pytest.fixture(scope="session")
def valkey() -> Synth:
    return synthesize({"store": "valkey"})


@pytest.fixture(scope="session", params=["dynamodb", "valkey"])
def either(request: pytest.FixtureRequest, dynamodb: Synth, valkey: Synth) -> Iterator[Synth]:
    """Both store variants: what every deployment must have, whichever store it uses."""
    yield dynamodb if request.param == "dynamodb" else valkey


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real bundle, built as ``make synth`` builds it: pip for Lambda's platform (from
    ``build/wheelhouse`` when ``make synth`` has filled it, else from the package index), the sources,
    and .pyc compiled by an interpreter of the runtime's version when this machine has one."""
    out = tmp_path_factory.mktemp("bundle")
    with local_wheelhouse():
        build_bundle(out, BUNDLE_SPEC)
    return out


@contextlib.contextmanager
def local_wheelhouse() -> Iterator[None]:
    """``$SOCKLESS_WHEELHOUSE`` set to ``build/wheelhouse`` when that exists (and nothing else set it)."""
    wheelhouse = REPO_ROOT / "build" / "wheelhouse"
    with pytest.MonkeyPatch.context() as patch:
        if wheelhouse.is_dir() and not os.environ.get(WHEELHOUSE_ENV):
            patch.setenv(WHEELHOUSE_ENV, str(wheelhouse))
        yield


@pytest.fixture(scope="session")
def bundle_zip(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle zipped, as the asset Lambda receives."""
    return Path(shutil.make_archive(str(tmp_path_factory.mktemp("zip") / "bundle"), "zip", bundle))


def render(value: Any, placeholders: dict[str, str] | None = None) -> str:
    """A CloudFormation value as the string it becomes at deploy time, with each intrinsic (Ref, GetAtt,
    ImportValue...) replaced by a placeholder: ``placeholders[logical_id]`` or ``<logical_id>``."""
    placeholders = placeholders or {}
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(render(part, placeholders) for part in parts)
    if isinstance(value, dict) and "Fn::Select" in value:
        index, items = value["Fn::Select"]
        if isinstance(items, dict) and "Fn::Split" in items:
            separator, source = items["Fn::Split"]
            parts = render(source, placeholders).split(separator)
            return parts[int(index)] if int(index) < len(parts) else f"<part {index} of {render(source, placeholders)}>"
        return render(items[int(index)], placeholders)
    if isinstance(value, dict) and "Ref" in value:
        return placeholders.get(value["Ref"], f"<{value['Ref']}>")
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        name = value["Fn::GetAtt"][0]
        return placeholders.get(name, f"<{name}.{value['Fn::GetAtt'][1]}>")
    return json.dumps(value)
