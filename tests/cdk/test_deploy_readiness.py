"""Would CloudFormation and Lambda accept this stack? Checks over synthesized templates, for the limits that
only fail at deploy time (#14 "What to build": the deploy-readiness test).

- no physical name shared by two stacks (two stack names in one account, or one name in two regions);
- at most 60 dynamic references per template, with many apps (CloudFormation's limit);
- each function's environment under Lambda's 4 KB;
- every function's runtime not deprecated within a year of today (``cdk/runtimes.py``: AWS's dates, with
  their source and the day they were read; docs/runtime.md shows the same table);
- the real bundle under Lambda's deployment package quotas: 250 MB unzipped, 50 MB zipped
  (docs/runtime.md#deployment-package-quotas).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from cdk import runtimes
from cdk.components.apps import MAX_SECRET_REFERENCE
from cdk.components.naming import physical_name
from cdk.stack import FUNCTIONS
from tests.cdk.conftest import REPO_ROOT, Synth, render, synthesize

MANY_APPS = 20
OTHER_STACK = "sockless-staging"
# Properties named *Name that are not a resource's own name, or whose name only has to be unique inside
# its parent (a stage in its API, an inline policy in its role).
NOT_PHYSICAL_NAMES = {"MetricName", "DisplayName", "StageName", "PolicyName", "IntegrationResponseKey"}
# Lambda: the total size of all environment variables of a function (keys and values).
LAMBDA_ENVIRONMENT_LIMIT = 4096
# An intrinsic value (a Ref/GetAtt resolved at deploy time) is counted at this length: longer than any
# table, queue URL, function name or API id the stack's references resolve to.
INTRINSIC_LENGTH = 256


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Another stack name, and many apps (each with its own secret, some with webhooks)."""
    apps: list[dict[str, Any]] = [{"id": str(200000 + i), "key": f"app-key-{i:02d}"} for i in range(MANY_APPS)]
    for app in apps[::5]:
        app["webhooks"] = [{"url": f"https://hooks.example.com/{app['id']}"}]
    path = tmp_path_factory.mktemp("apps") / "apps.json"
    path.write_text(json.dumps(apps))
    return synthesize({"apps_file": str(path), "stack_name": OTHER_STACK})


def physical_names(synth: Synth) -> dict[str, str]:
    """Every name a resource is given explicitly, rendered (``<AWS::Region>`` stays a placeholder, the same
    for both stacks: a global name must differ even in one region), keyed by ``Type.Property``."""
    names: dict[str, str] = {}
    for logical_id, resource in synth.resources.items():
        for key, value in resource.get("Properties", {}).items():
            if not key.endswith("Name") or key in NOT_PHYSICAL_NAMES:
                continue
            if isinstance(value, dict) and ("Ref" in value or "Fn::GetAtt" in value):
                continue  # a pointer to another resource, not a name
            names[f"{resource['Type']}.{key}:{logical_id}"] = render(value)
    return names


def test_no_physical_name_is_shared_by_two_stack_names(dynamodb: Synth, many: Synth) -> None:
    first, second = physical_names(dynamodb), physical_names(many)
    assert any(k.startswith("AWS::CloudFront::Function.Name") for k in first)
    shared = set(first.values()) & set(second.values())
    assert not shared, f"stacks {dynamodb.stack.stack_name!r} and {OTHER_STACK!r} would both create {shared}"


def test_global_names_carry_the_region(dynamodb: Synth) -> None:
    """A CloudFront Function is global: the same stack name deployed in two regions needs two names."""
    [function] = dynamodb.of_type("AWS::CloudFront::Function").values()
    assert "<AWS::Region>" in render(function["Properties"]["Name"])


def test_long_stack_names_keep_distinct_names_within_the_limits() -> None:
    a, b = "sockless-" + "x" * 100 + "-blue", "sockless-" + "x" * 100 + "-green"
    for limit in (40, 49):
        name_a, name_b = physical_name(a, "state", limit=limit), physical_name(b, "state", limit=limit)
        assert len(name_a) <= limit and len(name_b) <= limit
        assert name_a != name_b
    assert physical_name("sockless", "state", limit=40) == "sockless-state"


# CloudFormation: dynamic references ({{resolve:...}}) per template.
MAX_DYNAMIC_REFERENCES = 60


def test_at_most_60_dynamic_references_with_many_apps(many: Synth) -> None:
    references = json.dumps(many.json).count("{{resolve:")
    assert references <= MAX_DYNAMIC_REFERENCES, f"{references} dynamic references with {'many apps'}"


# What a pseudo parameter resolves to, at most (the longest region name is 14 characters).
PSEUDO_LENGTH = {"AWS::Region": 14, "AWS::AccountId": 12, "AWS::Partition": 10, "AWS::URLSuffix": 16}
# What a Ref to a resource of the stack resolves to, at most, by type (AWS's limits on each name; a queue's
# Ref is its URL: https://sqs.<region>.amazonaws.com/<account>/<name of at most 80>).
REF_LENGTH = {"AWS::Lambda::Function": 64, "AWS::SQS::Queue": 150, "AWS::ApiGatewayV2::Api": 10}


def _size(value: Any, synth: Synth) -> int:
    """The resolved length of a variable's value, counting each intrinsic at the most it can resolve to."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict) and "Fn::Join" in value:
        return sum(_size(part, synth) for part in value["Fn::Join"][1])
    if isinstance(value, dict) and "Fn::Select" in value:
        return MAX_SECRET_REFERENCE  # the generated secret's name in its ARN (cdk/components/apps.py)
    if isinstance(value, dict) and value.get("Ref") in PSEUDO_LENGTH:
        return PSEUDO_LENGTH[value["Ref"]]
    if isinstance(value, dict) and value.get("Ref") in synth.resources:
        return REF_LENGTH.get(synth.resources[value["Ref"]]["Type"], INTRINSIC_LENGTH)
    return INTRINSIC_LENGTH


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_environment_is_under_lambdas_4_kb_with_many_apps(many: Synth, name: str) -> None:
    variables = many.environment(FUNCTIONS[name].handler)
    total = sum(len(key) + _size(value, many) for key, value in variables.items())
    assert total < LAMBDA_ENVIRONMENT_LIMIT, f"{name}: {total} bytes of environment"


# A stack deployed today must still be deployable (and patched) for at least this long.
RUNTIME_HORIZON = datetime.timedelta(days=365)


def test_every_functions_runtime_is_supported_for_a_year_from_today(either: Synth) -> None:
    """Sockless's functions and those the CDK adds (the Valkey variant's custom resource) alike."""
    today = datetime.date.today()
    used = {f["Properties"]["Runtime"] for f in either.of_type("AWS::Lambda::Function").values()}
    assert "python3.13" in used
    unknown = used - runtimes.RUNTIMES.keys()
    assert not unknown, f"no deprecation dates for {unknown}: add their rows to cdk/runtimes.py from AWS's page"
    for runtime in sorted(used):
        row = runtimes.RUNTIMES[runtime]
        assert not runtimes.deprecated_within(runtime, RUNTIME_HORIZON, today), (
            f"{runtime} is deprecated on {row.deprecation} ({row.source.url}, read {runtimes.READ}): "
            "move the stack to a newer runtime (docs/runtime.md)"
        )


def test_the_runtime_dates_were_read_less_than_six_months_ago() -> None:
    """AWS moves its forecast dates: a stale table could pass a runtime that is no longer supported."""
    age = datetime.date.today() - runtimes.READ
    assert age <= runtimes.STALE_AFTER, (
        f"cdk/runtimes.py was read on {runtimes.READ}: re-read its sources, update the dates and READ, and "
        "regenerate the table of docs/runtime.md (python -m cdk.runtimes)"
    )


def test_docs_show_the_table_the_test_reads() -> None:
    page = (REPO_ROOT / "docs" / "runtime.md").read_text(encoding="utf-8")
    assert runtimes.markdown_table() in page, "docs/runtime.md's table differs: paste `python -m cdk.runtimes`"
    assert f"read {runtimes.READ}" in page
    for source in {row.source for row in runtimes.RUNTIMES.values()}:
        assert source.url in page


# AWS Lambda quotas, "Deployment package (.zip file archive) size" (docs/runtime.md#deployment-package-quotas):
# the unzipped contents, layers included (Lambda's own error says 262144000 bytes), and the zip uploaded
# directly through the Lambda API (larger zips go through S3, as CDK assets do, but this one need not).
MAX_UNZIPPED = 250 * 1024 * 1024
MAX_ZIPPED = 50 * 1024 * 1024


def test_the_bundle_fits_lambdas_deployment_package_quotas(bundle: Path, bundle_zip: Path) -> None:
    """The sockless functions have no layers, so the bundle is all that counts towards 250 MB."""
    unzipped = sum(p.lstat().st_size for p in bundle.rglob("*") if p.is_file())
    assert unzipped < MAX_UNZIPPED, f"{unzipped / 2**20:.1f} MiB unzipped"
    assert bundle_zip.stat().st_size < MAX_ZIPPED, f"{bundle_zip.stat().st_size / 2**20:.1f} MiB zipped"


def test_no_function_has_layers_that_would_count_towards_the_quota(either: Synth) -> None:
    for name in FUNCTIONS:
        _, function = either.function(FUNCTIONS[name].handler)
        assert "Layers" not in function["Properties"], name
