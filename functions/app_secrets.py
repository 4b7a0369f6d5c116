"""App secrets read at a container's first invocation, not carried in the function's environment.

The stack used to put each app's secret into ``SOCKLESS_APPS`` as a CloudFormation dynamic reference,
repeated in every function: CloudFormation allows 60 dynamic references per template, so 8 apps could not
deploy (#14 defect 3). Now ``SOCKLESS_APPS`` holds each app's settings without its secret, and
``APP_SECRETS`` says where each secret is::

    {"source": "secretsmanager",
     "arn_prefix": "arn:aws:secretsmanager:us-east-1:123456789012:secret:",
     "apps": {"100001": "AppsApp100001Secret-AbCdEf", "100002": "arn:aws:...:secret:other-XyZ123#pusher"}}

A reference is the rest of a secret's ARN after ``arn_prefix`` (kept short: Lambda's 4 KB environment is
the other limit), or a whole ARN; ``#key`` reads one key of a JSON secret. ``source`` is the swappable
part: ``secretsmanager`` (GetSecretValue, one call per app, made concurrently) or ``ssm`` (SecureString
parameters, GetParameters in tens). The values are read once per container and kept for its life: a
changed secret reaches the functions when their containers are replaced (a deploy does that).

Not ``SOCKLESS_*``: it is not a setting, the container resolves it before the settings are loaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

VARIABLE = "APP_SECRETS"
# At most this many GetSecretValue calls in flight: the whole set costs about one round trip.
MAX_CONCURRENT_READS = 16
SSM_BATCH = 10  # GetParameters takes at most 10 names


class AppSecretError(RuntimeError):
    """An app secret could not be read (missing, not a string, no such JSON key, access denied)."""


def _split(reference: str) -> tuple[str, str | None]:
    secret_id, _, json_key = reference.partition("#")
    return secret_id, json_key or None


def _pick(value: str, json_key: str | None, secret_id: str) -> str:
    if json_key is None:
        return value
    try:
        picked = json.loads(value)[json_key]
    except (ValueError, KeyError, TypeError):
        raise AppSecretError(f"secret {secret_id} has no JSON key {json_key!r}") from None
    if not isinstance(picked, str):
        raise AppSecretError(f"secret {secret_id}: key {json_key!r} is not a string")
    return picked


def read_secretsmanager(references: Mapping[str, str], client_factory: Callable[[str], Any]) -> dict[str, str]:
    """``{app_id: secret}`` from Secrets Manager, one GetSecretValue per app, concurrently."""
    client = client_factory("secretsmanager")

    def read(item: tuple[str, str]) -> tuple[str, str]:
        app_id, reference = item
        secret_id, json_key = _split(reference)
        try:
            value = client.get_secret_value(SecretId=secret_id).get("SecretString")
        except Exception as exc:
            raise AppSecretError(f"cannot read the secret of app {app_id} ({secret_id}): {exc}") from exc
        if not isinstance(value, str):
            raise AppSecretError(f"the secret of app {app_id} ({secret_id}) is not a string secret")
        return app_id, _pick(value, json_key, secret_id)

    workers = max(1, min(MAX_CONCURRENT_READS, len(references)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(read, references.items()))


def read_ssm(references: Mapping[str, str], client_factory: Callable[[str], Any]) -> dict[str, str]:
    """``{app_id: secret}`` from SSM Parameter Store (SecureString, decrypted), ten names per call."""
    client = client_factory("ssm")
    names = {app_id: _split(reference) for app_id, reference in references.items()}
    wanted = sorted({name for name, _ in names.values()})
    values: dict[str, str] = {}
    for start in range(0, len(wanted), SSM_BATCH):
        batch = wanted[start : start + SSM_BATCH]
        result = client.get_parameters(Names=batch, WithDecryption=True)
        values.update({p["Name"]: p["Value"] for p in result.get("Parameters", [])})
        if result.get("InvalidParameters"):
            raise AppSecretError(f"no such SSM parameters: {', '.join(result['InvalidParameters'])}")
    return {app_id: _pick(values[name], key, name) for app_id, (name, key) in names.items()}


READERS: dict[str, Callable[[Mapping[str, str], Callable[[str], Any]], dict[str, str]]] = {
    "secretsmanager": read_secretsmanager,
    "ssm": read_ssm,
}


def secrets_session(environ: Mapping[str, str] = os.environ) -> Any:
    """A boto3 session for reading the secrets (and for the container to keep), or ``None`` when the
    environment names no app secrets. One session per container: a client of a session that has built one
    already costs ~10-15 ms of CPU, of a new session ~150 ms (botocore loads its data per session)."""
    if not environ.get(VARIABLE):
        return None
    import boto3

    return boto3.session.Session()


def _default_client(service: str) -> Any:
    """A client in the function's region; ``AWS_ENDPOINT_URL_<SERVICE>`` (botocore) points it elsewhere.
    A session of its own: boto3's default session is not safe to share between threads (the emulator)."""
    import boto3

    return boto3.session.Session().client(service)


def apps_with_secrets(
    environ: Mapping[str, str] = os.environ, client_factory: Callable[[str], Any] = _default_client
) -> list[dict[str, Any]] | None:
    """``SOCKLESS_APPS`` with each app's secret filled in from ``APP_SECRETS``; ``None`` when the
    environment has no ``APP_SECRETS`` (the local server, tests: secrets are in the apps themselves)."""
    raw = environ.get(VARIABLE)
    if not raw:
        return None
    spec = json.loads(raw)
    source = spec.get("source", "secretsmanager")
    if source not in READERS:
        raise AppSecretError(f"{VARIABLE}: unknown source {source!r} (one of {', '.join(READERS)})")
    prefix = str(spec.get("arn_prefix", ""))
    references = {
        str(app_id): ref if ref.startswith("arn:") or source != "secretsmanager" else prefix + ref
        for app_id, ref in dict(spec.get("apps", {})).items()
    }
    apps: list[dict[str, Any]] = json.loads(environ.get("SOCKLESS_APPS", "[]"))
    secrets = READERS[source](references, client_factory) if references else {}
    return [{**app, "secret": secrets[str(app["id"])]} if str(app["id"]) in secrets else app for app in apps]
