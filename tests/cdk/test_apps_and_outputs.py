"""App definitions from the apps file with secrets in Secrets Manager, and the outputs a team deploys for."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cdk.config import ConfigError, load_apps
from cdk.stack import FUNCTIONS
from tests.cdk.conftest import REPO_ROOT, Synth, render, synthesize
from tests.support import dotenv

HANDLER = FUNCTIONS["message"].handler


def _write(tmp_path: Path, apps: Any) -> Path:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps(apps))
    return path


def _apps_env(synth: Synth) -> list[dict[str, Any]]:
    apps: list[dict[str, Any]] = json.loads(render(synth.environment(HANDLER)["SOCKLESS_APPS"]))
    return apps


def _secrets_env(synth: Synth, handler: str = HANDLER) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(render(synth.environment(handler)["APP_SECRETS"]))
    return spec


def test_each_app_gets_a_generated_secret_the_functions_read_at_run_time(dynamodb: Synth) -> None:
    [app] = _apps_env(dynamodb)
    secret_id, secret = dynamodb.one("AWS::SecretsManager::Secret")
    assert app["id"] == "100001" and app["key"] == "sockless-app-key"
    assert "secret" not in app
    spec = _secrets_env(dynamodb)
    assert spec["source"] == "secretsmanager"
    assert spec["arn_prefix"] == "arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:"
    # The generated secret's ARN, after the prefix: its name with AWS's suffix.
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:AppsSecret-AbCdEf"
    resolved = json.loads(render(dynamodb.environment(HANDLER)["APP_SECRETS"], {secret_id: arn}))
    assert resolved["apps"] == {"100001": "AppsSecret-AbCdEf"}
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32 and generated["ExcludePunctuation"] is True
    # A teardown must not delete what every customer backend signs with.
    assert secret["DeletionPolicy"] == "Retain"


def test_no_function_gets_a_secret_or_a_dynamic_reference_only_read_access(dynamodb: Synth) -> None:
    secret_id, _ = dynamodb.one("AWS::SecretsManager::Secret")
    assert "{{resolve:" not in json.dumps(dynamodb.json)
    for spec in FUNCTIONS.values():
        assert all(
            "secret" not in app for app in json.loads(render(dynamodb.environment(spec.handler)["SOCKLESS_APPS"]))
        )
        reads = [
            s["Resource"]
            for s in dynamodb.statements(spec.handler)
            if "secretsmanager:GetSecretValue" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        ]
        assert reads == [{"Ref": secret_id}], spec.handler


def test_apps_keep_every_setting_of_the_file(tmp_path: Path) -> None:
    apps = [
        {
            "id": "1",
            "key": "k1",
            "max_connections": 5,
            "enable_client_messages": True,
            "webhooks": [{"url": "https://example.com/hooks", "event_types": ["channel_occupied"]}],
        },
        {
            "id": "2",
            "key": "k2",
            "secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pusher-AbCdEf",
            "secret_json_key": "secret",
        },
    ]
    synth = synthesize({"apps_file": str(_write(tmp_path, apps))})
    first, second = _apps_env(synth)
    assert {k: v for k, v in first.items() if k != "secret"} == apps[0]
    # An existing secret is referenced, not created; a JSON secret is read by key.
    assert len(synth.of_type("AWS::SecretsManager::Secret")) == 1
    assert (
        _secrets_env(synth)["apps"]["2"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pusher-AbCdEf#secret"
    )
    assert "secret_arn" not in second and "secret_json_key" not in second and "secret" not in second


def test_a_literal_secret_in_the_apps_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="literal 'secret'"):
        load_apps(_write(tmp_path, [{"id": "1", "key": "k", "secret": "s3cr3t"}]))


@pytest.mark.parametrize(
    ("apps", "message"),
    [
        pytest.param([{"id": "1", "key": "k", "max_conections": 5}], "max_conections", id="unknown-field"),
        pytest.param([{"id": "bad id", "key": "k"}], "app id must be", id="bad-id"),
        pytest.param([{"id": "1", "key": "k"}, {"id": "2", "key": "k"}], "duplicate app key", id="duplicate-key"),
        pytest.param([], "non-empty list", id="empty"),
        pytest.param(
            [{"id": "1", "key": "k1", "secret_parameter": "/p/1"}, {"id": "2", "key": "k2"}],
            "either every app's secret is an SSM parameter",
            id="secrets-in-two-places",
        ),
        pytest.param(
            [{"id": "1", "key": "k", "secret_parameter": "/p/1", "secret_arn": "arn:aws:secretsmanager:x"}],
            "both 'secret_arn' and 'secret_parameter'",
            id="secret-arn-and-parameter",
        ),
        pytest.param(
            [{"id": "1", "key": "k", "secret_parameter": "not a name"}], "not an SSM parameter name", id="bad-name"
        ),
    ],
)
def test_invalid_apps_files_fail_the_synth_with_the_reason(tmp_path: Path, apps: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_apps(_write(tmp_path, apps))


def test_secrets_can_be_ssm_secure_strings_the_team_created(tmp_path: Path) -> None:
    """Every app with ``secret_parameter``: no Secrets Manager secret ($0.40 a month each, docs/cost.md), the
    functions read the parameters (``APP_SECRETS`` source ``ssm``) and may read exactly those."""
    apps = [
        {"id": "1", "key": "k1", "secret_parameter": "/sockless/1"},
        {"id": "2", "key": "k2", "secret_parameter": "pusher-2", "secret_json_key": "secret"},
    ]
    synth = synthesize({"apps_file": str(_write(tmp_path, apps))})
    assert synth.of_type("AWS::SecretsManager::Secret") == {}
    assert _secrets_env(synth) == {"source": "ssm", "apps": {"1": "/sockless/1", "2": "pusher-2#secret"}}
    assert all("secret_parameter" not in app for app in _apps_env(synth))
    prefix = "arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/"
    for spec in FUNCTIONS.values():
        statements = synth.statements(spec.handler)
        reads = [s for s in statements if s["Action"] == "ssm:GetParameters"]
        assert [sorted(render(r) for r in s["Resource"]) for s in reads] == [
            [f"{prefix}pusher-2", f"{prefix}sockless/1"]
        ], spec.handler
        assert not any("secretsmanager" in json.dumps(s["Action"]) for s in statements), spec.handler
    outputs = synth.json["Outputs"]
    assert outputs["AppSecret1"]["Value"] == "/sockless/1"
    command = "aws ssm get-parameter --with-decryption --name /sockless/1 --query Parameter.Value --output text"
    assert render(outputs["LaravelEnvSecret"]["Value"]) == f"echo PUSHER_APP_SECRET=$({command})"


def test_too_many_apps_for_lambdas_environment_fail_the_synth(tmp_path: Path) -> None:
    apps = [{"id": str(n), "key": f"key-{n}", "allowed_origins": ["https://example.com"]} for n in range(40)]
    with pytest.raises(ValueError, match="4 KB environment"):
        synthesize({"apps_file": str(_write(tmp_path, apps))})


def test_bumping_apps_revision_replaces_the_containers_to_reread_secrets() -> None:
    synth = synthesize({"apps_revision": "2"})
    assert synth.environment(HANDLER)["APPS_REVISION"] == "2"


def test_outputs_name_the_one_host_and_the_apis_behind_it(dynamodb: Synth) -> None:
    outputs = dynamodb.json["Outputs"]
    distribution_id, _ = dynamodb.one("AWS::CloudFront::Distribution")
    host = {"Fn::GetAtt": [distribution_id, "DomainName"]}
    assert outputs["WebSocketHost"]["Value"] == host
    assert outputs["HttpHost"]["Value"] == host
    ws_api, _ = dynamodb.one("AWS::ApiGatewayV2::Api", ProtocolType="WEBSOCKET")
    assert (
        render(outputs["WebSocketApiUrl"]["Value"])
        == f"wss://<{ws_api}>.execute-api.<AWS::Region>.<AWS::URLSuffix>/prod"
    )
    secret_id, _ = dynamodb.one("AWS::SecretsManager::Secret")
    assert outputs["AppSecret100001"]["Value"] == {"Ref": secret_id}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_pusher_js_snippet_configures_a_real_pusher_js_client(dynamodb: Synth) -> None:
    """Evaluate the output under Node with pusher-js itself: it must build a client for the CloudFront host
    on wss/443 with the app's key (the connection attempt itself is cut short)."""
    [distribution_id] = dynamodb.of_type("AWS::CloudFront::Distribution")
    host = "d111111abcdef8.cloudfront.net"
    snippet = render(dynamodb.json["Outputs"]["PusherJsConfig"]["Value"], {distribution_id: host})
    script = (
        "import Pusher from 'pusher-js';\n"
        f"const pusher = {snippet};\n"
        "pusher.disconnect();\n"
        "console.log(JSON.stringify({key: pusher.key, host: pusher.config.wsHost, port: pusher.config.wssPort,"
        " tls: pusher.config.useTLS, transports: pusher.config.enabledTransports,"
        " activity: pusher.config.activityTimeout}));\n"
    )
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "key": "sockless-app-key",
        "host": host,
        "port": 443,
        "tls": True,
        "transports": ["ws", "wss"],
        "activity": 540_000,  # the functions announce 540 s too: pusher-js pings after the smaller one
    }
    assert dynamodb.environment("functions.message.handler.handler")["SOCKLESS_ACTIVITY_TIMEOUT"] == "540"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_laravel_echo_snippet_is_valid_javascript_with_the_same_options(dynamodb: Synth) -> None:
    [distribution_id] = dynamodb.of_type("AWS::CloudFront::Distribution")
    snippet = render(dynamodb.json["Outputs"]["LaravelEchoConfig"]["Value"], {distribution_id: "d1.cloudfront.net"})
    script = f"class Echo {{ constructor(o) {{ console.log(JSON.stringify(o)); }} }}; {snippet};"
    result = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    options = json.loads(result.stdout)
    assert options["broadcaster"] == "pusher" and options["key"] == "sockless-app-key"
    assert (options["wsHost"], options["wssPort"], options["forceTLS"]) == ("d1.cloudfront.net", 443, True)
    assert options["activityTimeout"] == 540_000


def test_the_laravel_env_output_is_a_block_to_paste_with_the_secret_command(dynamodb: Synth) -> None:
    """What Laravel reads from the pasted block: the broadcaster's settings (config/broadcasting.php) and Echo's
    VITE_ ones (resources/js/echo.js, as in tests/e2e/test_readme.py) name the host LaravelEchoConfig names."""
    outputs = dynamodb.json["Outputs"]
    secret_id, _ = dynamodb.one("AWS::SecretsManager::Secret")
    [distribution_id] = dynamodb.of_type("AWS::CloudFront::Distribution")
    placeholders = {
        secret_id: "arn:aws:secretsmanager:eu-west-1:1:secret:s-AbCdEf",
        distribution_id: "d1.cloudfront.net",
    }
    block = render(outputs["LaravelEnv"]["Value"], placeholders)
    env = dotenv(block)
    assert env == {
        "BROADCAST_CONNECTION": "pusher",
        "PUSHER_APP_ID": "100001",
        "PUSHER_APP_KEY": "sockless-app-key",
        "PUSHER_APP_SECRET": "",  # filled by the LaravelEnvSecret command, named on its line
        "PUSHER_HOST": "d1.cloudfront.net",
        "PUSHER_PORT": "443",
        "PUSHER_SCHEME": "https",
        "PUSHER_APP_CLUSTER": "mt1",
        "VITE_PUSHER_APP_KEY": "sockless-app-key",
        "VITE_PUSHER_HOST": "d1.cloudfront.net",
        "VITE_PUSHER_PORT": "443",
        "VITE_PUSHER_SCHEME": "https",
        "VITE_PUSHER_APP_CLUSTER": "mt1",
    }
    command = "aws secretsmanager get-secret-value --secret-id arn:aws:secretsmanager:eu-west-1:1:secret:s-AbCdEf"
    [secret_line] = [line for line in block.splitlines() if line.startswith("PUSHER_APP_SECRET=")]
    assert secret_line.startswith("PUSHER_APP_SECRET=  # " + command)
    assert render(outputs["LaravelEnvSecret"]["Value"], placeholders).startswith(f"echo PUSHER_APP_SECRET=$({command}")


def test_a_json_secrets_command_prints_its_member(tmp_path: Path) -> None:
    """``secret_json_key``: the secret is one member of a JSON document; the command prints that member alone."""
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pusher-AbCdEf"
    apps = [{"id": "1", "key": "k1", "secret_arn": arn, "secret_json_key": "it's"}]
    synth = synthesize({"apps_file": str(_write(tmp_path, apps))})
    line = render(synth.json["Outputs"]["LaravelEnvSecret"]["Value"])
    prefix = f"echo PUSHER_APP_SECRET=$(aws secretsmanager get-secret-value --secret-id {arn} "
    assert line.startswith(prefix) and line.endswith(")")
    # The AWS CLI's place taken by the document it would print: the rest of the line runs as written.
    document = json.dumps({"other": "x", "it's": "s3cr3t"})
    fake = line.replace(line[len("echo PUSHER_APP_SECRET=$(") : line.index(" | ")], f"echo {shlex.quote(document)}")
    result = subprocess.run(["bash", "-c", fake], capture_output=True, text=True, timeout=30, check=False)
    assert (result.returncode, result.stdout) == (0, "PUSHER_APP_SECRET=s3cr3t\n"), result.stderr
