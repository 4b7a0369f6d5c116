"""Static checks of the synthesized templates: cdk-nag's AwsSolutions pack and cfn-lint, for both stores.

The session fixtures already synthesize with cdk-nag (an unacknowledged finding raises there); these tests
prove the pack is really running, that acknowledgements are specific, and that cfn-lint passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from cdk.app import build_app
from tests.cdk.conftest import SKIP_BUNDLING, Synth, synthesize

# W3005 (a DependsOn already implied by a Ref/GetAtt) is how CDK makes a function wait for its role's
# policy; it is harmless and not ours to change (docs/sources.md#tooling).
CFN_LINT_IGNORED = ("W3005",)
CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")


def test_an_unacknowledged_finding_fails_the_synth() -> None:
    app, stack = build_app(SKIP_BUNDLING)
    sqs.CfnQueue(stack, "QueueWithoutDeadLetters")  # AwsSolutions-SQS3 (and SQS4), acknowledged nowhere
    with pytest.raises(RuntimeError, match=r"AwsSolutions-SQS3"):
        app.synth()


def test_checks_pass_when_the_cli_knows_the_account_and_region(monkeypatch: pytest.MonkeyPatch) -> None:
    """``cdk deploy`` resolves region and partition into literals, which changes cdk-nag's finding ids."""
    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "123456789012")
    monkeypatch.setenv("CDK_DEFAULT_REGION", "eu-west-1")
    synth = synthesize({"store": "valkey"})
    assert synth.stack.region == "eu-west-1"


def acknowledgements(synth: Synth) -> list[tuple[str, str, str]]:
    """(construct path, rule id, reason) of every cdk-nag acknowledgement in the stack (CDK itself adds some
    for its own CloudFormation validation, e.g. W3010 for the VPC's availability zones: not ours)."""
    out: list[tuple[str, str, str]] = []
    for construct in [synth.stack, *synth.stack.node.find_all()]:
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in entry.data.items():
                    if "AwsSolutions-" in rule:
                        out.append((construct.node.path, rule.removeprefix("Annotation::"), reason))
    return out


def test_acknowledgements_sit_on_the_constructs_they_are_about_with_specific_reasons(either: Synth) -> None:
    found = acknowledgements(either)
    assert found
    for path, rule, reason in found:
        assert path.count("/") >= 1, f"{rule} acknowledged for the whole stack"
        assert len(reason) >= 100, (path, rule, reason)


def test_only_functions_that_post_are_acknowledged_for_the_connections_wildcard(dynamodb: Synth) -> None:
    paths = {path for path, rule, _ in acknowledgements(dynamodb) if "@connections/*" in rule}
    assert paths == {
        f"Sockless/{name.title().replace('_', '')}Function/Role"
        for name, spec in dynamodb.stack.function_specs.items()
        if spec.posts
    }


def test_the_acknowledged_rules_are_the_ones_this_design_explains(dynamodb: Synth, valkey: Synth) -> None:
    def rules(synth: Synth) -> set[str]:
        return {rule.split("[")[0] for _, rule, _ in acknowledgements(synth)}

    common = {
        "AwsSolutions-L1",
        "AwsSolutions-IAM5",
        "AwsSolutions-APIG4",
        "AwsSolutions-SMG4",
        "AwsSolutions-IAM4",
        "AwsSolutions-CFR1",
        "AwsSolutions-CFR2",
        "AwsSolutions-CFR3",
        "AwsSolutions-CFR4",
        "AwsSolutions-SQS3",  # AsyncFailures: a Lambda on-failure destination, i.e. a dead-letter queue
    }
    assert rules(dynamodb) == common
    assert rules(valkey) == common


@pytest.mark.parametrize("store", ["dynamodb", "valkey"])
def test_cfn_lint_passes_on_the_template(store: str, dynamodb: Synth, valkey: Synth, tmp_path: Path) -> None:
    synth = dynamodb if store == "dynamodb" else valkey
    template = tmp_path / f"sockless-{store}.template.json"
    template.write_text(json.dumps(synth.json))
    result = subprocess.run(
        [CFN_LINT, "--ignore-checks", *CFN_LINT_IGNORED, "--", str(template)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_would_catch_a_bad_iam_action(dynamodb: Synth, tmp_path: Path) -> None:
    """The lint really inspects our policies (it caught dynamodb:TransactWriteItems, which is not an action)."""
    broken = json.loads(json.dumps(dynamodb.json))
    policy = next(iter(dynamodb.of_type("AWS::IAM::Policy")))
    broken["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"][0]["Action"] = (
        "dynamodb:TransactWriteItems"
    )
    template = tmp_path / "broken.template.json"
    template.write_text(json.dumps(broken))
    result = subprocess.run(
        [CFN_LINT, "--ignore-checks", *CFN_LINT_IGNORED, "--", str(template)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "W3037" in result.stdout
