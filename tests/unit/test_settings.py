"""Settings: defaults, then the JSON config file, then ``SOCKLESS_*`` variables; bad config fails naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pusher
import pytest
from pydantic import ValidationError

from shared.settings import DEFAULT_APP, ConfigFileError, Settings, load_settings
from tests.serverproc import ROOT


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The developer's own ``SOCKLESS_*`` variables must not leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("SOCKLESS_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def write_config(tmp_path: Path) -> Any:
    def write(content: Any) -> Path:
        path = tmp_path / "config.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return path

    return write


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in error["loc"]) for error in exc.errors()}


# -- defaults -------------------------------------------------------------------------------------------


def test_defaults_match_soketi_and_pusher() -> None:
    settings = load_settings()
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 6001, 9601)
    assert settings.apps == (DEFAULT_APP,)
    assert (DEFAULT_APP.id, DEFAULT_APP.key, DEFAULT_APP.secret) == ("100001", "app-key", "app-secret")
    assert settings.store.driver == "memory"
    assert settings.queue.driver == "memory"
    assert settings.activity_timeout == 120
    assert settings.webhooks.delay_seconds == 3.0
    assert settings.webhooks.retry_max_elapsed_seconds == 300.0


def test_default_app_id_is_one_the_python_sdk_accepts() -> None:
    """The official Python SDK refuses non-numeric app ids; the default app must work with it unchanged."""
    pusher.Pusher(app_id=DEFAULT_APP.id, key=DEFAULT_APP.key, secret=DEFAULT_APP.secret)
    with pytest.raises(ValueError, match="app id"):
        pusher.Pusher(app_id="app-id", key=DEFAULT_APP.key, secret=DEFAULT_APP.secret)


def test_config_files_keep_non_numeric_app_ids(write_config: Any) -> None:
    """soketi's and Sockudo's configs name their app "app-id": such a file still loads as it is."""
    path = write_config({"apps": [{"id": "app-id", "key": "app-key", "secret": "app-secret"}]})
    assert [app.id for app in load_settings(path).apps] == ["app-id"]


def test_app_defaults_are_pusher_published_limits() -> None:
    app = load_settings(apps=[{"id": "a", "key": "k", "secret": "s"}]).apps[0]
    assert app.enabled
    assert app.max_connections is None
    assert not app.enable_client_messages
    assert app.max_client_events_per_second == 10
    assert app.max_presence_members_per_channel == 100
    assert app.max_presence_member_size_in_kb == 1
    assert app.max_channel_name_length == 200
    assert app.max_event_channels_at_once == 100
    assert app.max_event_name_length == 200
    assert app.max_event_payload_in_kb == 10
    assert app.max_event_batch_size == 10
    assert app.webhooks == ()


# -- config file and environment ------------------------------------------------------------------------


def test_config_file_values_are_used(write_config: Any) -> None:
    path = write_config(
        {
            "port": 6500,
            "apps": [{"id": "1", "key": "k1", "secret": "s1", "max_connections": 3}],
            "store": {"driver": "redis", "url": "redis://127.0.0.1:6379/0"},
            "webhooks": {"delay_seconds": 0.5},
        }
    )
    settings = load_settings(path)
    assert settings.port == 6500
    assert [(a.id, a.key, a.max_connections) for a in settings.apps] == [("1", "k1", 3)]
    assert settings.store.driver == "redis"
    assert settings.store.url == "redis://127.0.0.1:6379/0"
    assert settings.webhooks.delay_seconds == 0.5


def test_environment_overrides_the_file(write_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config({"port": 6500, "activity_timeout": 60})
    monkeypatch.setenv("SOCKLESS_PORT", "7000")
    settings = load_settings(path)
    assert settings.port == 7000
    assert settings.activity_timeout == 60


def test_nested_environment_merges_into_the_file_section(write_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``SOCKLESS_STORE__PREFIX`` changes one field of the file's ``store`` section and keeps the others."""
    path = write_config({"store": {"driver": "redis", "url": "redis://file:6379", "prefix": "file"}})
    monkeypatch.setenv("SOCKLESS_STORE__PREFIX", "env")
    monkeypatch.setenv("SOCKLESS_WEBHOOKS__DELAY_SECONDS", "1.5")
    settings = load_settings(path)
    assert settings.store.driver == "redis"
    assert settings.store.url == "redis://file:6379"
    assert settings.store.prefix == "env"
    assert settings.webhooks.delay_seconds == 1.5


def test_apps_from_the_environment_as_json(write_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config({"apps": [{"id": "file", "key": "fk", "secret": "fs"}]})
    monkeypatch.setenv("SOCKLESS_APPS", json.dumps([{"id": "env", "key": "ek", "secret": "es"}]))
    assert [a.id for a in load_settings(path).apps] == ["env"]


def test_overrides_beat_the_file_and_none_means_unset(write_config: Any) -> None:
    path = write_config({"port": 6500, "host": "0.0.0.0"})
    settings = load_settings(path, port=6600, host=None)
    assert settings.port == 6600
    assert settings.host == "0.0.0.0"


def test_command_line_flags_beat_the_environment(write_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--port 8000`` is the most specific thing a user can say: it wins over ``SOCKLESS_PORT``."""
    path = write_config({"port": 6500})
    monkeypatch.setenv("SOCKLESS_PORT", "7000")
    assert load_settings(path, port=8000).port == 8000
    assert load_settings(path).port == 7000


def test_cli_reads_the_config_file_named_by_sockless_config(write_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from local_server.__main__ import parse_args, settings_from_args

    monkeypatch.setenv("SOCKLESS_CONFIG", str(write_config({"port": 6123})))
    assert settings_from_args(parse_args([])).port == 6123
    assert settings_from_args(parse_args(["--port", "6124"])).port == 6124


def test_bad_environment_value_names_the_variable_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKLESS_WEBHOOKS__DELAY_SECONDS", "soon")
    with pytest.raises(ValidationError) as caught:
        load_settings()
    assert "webhooks.delay_seconds" in error_fields(caught.value)


# -- bad config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        pytest.param({"port": "six thousand"}, "port", id="port-not-int"),
        pytest.param({"port": 70000}, "port", id="port-out-of-range"),
        pytest.param({"prot": 6001}, "prot", id="unknown-top-level-key"),
        pytest.param({"store": {"drivr": "memory"}}, "store.drivr", id="unknown-nested-key"),
        pytest.param({"store": {"driver": "mongo"}}, "store.driver", id="unknown-driver"),
        pytest.param({"event_loop": "trio"}, "event_loop", id="unknown-event-loop"),
        pytest.param(
            {"apps": [{"id": "a", "key": "k", "secret": "s", "max_conections": 1}]},
            "apps.0.max_conections",
            id="unknown-app-key",
        ),
        pytest.param(
            {"apps": [{"id": "a", "key": "k", "secret": "s", "max_connections": -1}]},
            "apps.0.max_connections",
            id="negative-limit",
        ),
        pytest.param({"apps": [{"id": "a b", "key": "k", "secret": "s"}]}, "apps.0.id", id="bad-app-id"),
        pytest.param({"apps": [{"id": "a", "key": "", "secret": "s"}]}, "apps.0.key", id="empty-key"),
        pytest.param({"apps": [{"id": "a", "key": "k"}]}, "apps.0.secret", id="missing-secret"),
        pytest.param(
            {"apps": [{"id": "a", "key": "k", "secret": "s"}, {"id": "a", "key": "k2", "secret": "s"}]},
            "apps",
            id="duplicate-app-id",
        ),
        pytest.param(
            {"apps": [{"id": "a", "key": "k", "secret": "s", "webhooks": [{"event_types": ["client_event"]}]}]},
            "apps.0.webhooks.0",
            id="webhook-without-target",
        ),
        pytest.param(
            {"apps": [{"id": "a", "key": "k", "secret": "s", "webhooks": [{"url": "ftp://x"}]}]},
            "apps.0.webhooks.0",
            id="webhook-url-scheme",
        ),
        pytest.param(
            {"apps": [{"id": "a", "key": "k", "secret": "s", "webhooks": [{"url": "http://x", "event_types": ["x"]}]}]},
            "apps.0.webhooks.0.event_types.0",
            id="unknown-webhook-event",
        ),
        pytest.param(
            {
                "apps": [
                    {
                        "id": "a",
                        "key": "k",
                        "secret": "s",
                        "webhooks": [{"url": "http://x", "filter": {"channel_pattern": "("}}],
                    }
                ]
            },
            "apps.0.webhooks.0.filter.channel_pattern",
            id="webhook-filter-bad-regex",
        ),
    ],
)
def test_bad_config_file_names_the_field(write_config: Any, config: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load_settings(write_config(config))
    assert field in error_fields(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("{not json", "is not valid JSON", id="invalid-json"),
        pytest.param("[1, 2]", "must hold a JSON object", id="array"),
        pytest.param('"apps"', "must hold a JSON object", id="string"),
    ],
)
def test_unreadable_config_file(write_config: Any, content: str, message: str) -> None:
    with pytest.raises(ConfigFileError, match=message):
        load_settings(write_config(content))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read config file"):
        load_settings(tmp_path / "absent.json")


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.port = 1
    assert isinstance(settings, Settings)


# -- the CLI --------------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SOCKLESS_")}
    return subprocess.run(
        [sys.executable, "-m", "local_server", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("config", "field"),
    [
        pytest.param({"apps": [{"id": "a", "key": "k", "secret": "s", "max_connections": -1}]}, "max_connections"),
        pytest.param({"port": "x"}, "port", id="port"),
        pytest.param({"prot": 1}, "prot", id="unknown-key"),
        pytest.param(
            {
                "apps": [
                    {
                        "id": "a",
                        "key": "k",
                        "secret": "s",
                        "webhooks": [{"url": "http://x", "filter": {"channel_pattern": "("}}],
                    }
                ]
            },
            "channel_pattern",
            id="bad-regex",
        ),
    ],
)
def test_cli_bad_config_exits_non_zero_naming_the_field(write_config: Any, config: dict[str, Any], field: str) -> None:
    result = run_cli("--config", str(write_config(config)))
    assert result.returncode != 0
    assert "invalid configuration" in result.stderr
    assert field in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_config_file_exits_non_zero(tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "absent.json"))
    assert result.returncode != 0
    assert "cannot read config file" in result.stderr
    assert "Traceback" not in result.stderr
