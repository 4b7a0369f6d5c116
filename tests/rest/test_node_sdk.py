"""Every REST endpoint through the official Node ``pusher`` SDK (5.3.4), which signs GETs without body_md5
and puts ``info`` and ``socket_id`` in the JSON body."""

from __future__ import annotations

import json

from tests.rest.clients import Creds, run_node_sdk
from tests.rest.conftest import Connect
from tests.serverproc import ServerProcess


async def test_trigger_with_info_publishes_and_reports_the_counts(
    server: ServerProcess, numeric: Creds, connect: Connect, uid: str
) -> None:
    public, presence = f"node-pub-{uid}", f"presence-node-{uid}"
    a, b = await connect(server), await connect(server)
    await a.subscribe(public)
    await b.subscribe(public)
    await a.subscribe(presence, user_id="ann")
    await b.subscribe(presence, user_id="ben")
    await a.expect_event(presence, "pusher_internal:member_added")

    results = run_node_sdk(
        server.port,
        numeric,
        [
            {"op": "trigger", "args": [public, "hello", {"n": 1}, {"info": "subscription_count"}]},
            {"op": "trigger", "args": [[presence], "hello", "x", {"info": "user_count", "socket_id": a.socket_id}]},
            {"op": "trigger", "args": [public, "plain", "y"]},
        ],
    )

    assert results == [
        {"status": 200, "body": {"channels": {public: {"subscription_count": 2}}}},
        {"status": 200, "body": {"channels": {presence: {"user_count": 2}}}},
        {"status": 200, "body": {}},
    ]
    assert json.loads((await a.expect_event(public, "hello"))["data"]) == {"n": 1}
    await a.expect_event(public, "plain")  # socket_id excluded a from the presence event
    await b.expect_event(public, "hello")
    await b.expect_event(presence, "hello")
    await b.expect_event(public, "plain")


async def test_trigger_batch_answers_one_info_entry_per_event(
    server: ServerProcess, numeric: Creds, connect: Connect, uid: str
) -> None:
    public, presence = f"node-batch-{uid}", f"presence-node-batch-{uid}"
    client = await connect(server)
    await client.subscribe(public)
    await client.subscribe(presence, user_id="ann")

    results = run_node_sdk(
        server.port,
        numeric,
        [
            {
                "op": "triggerBatch",
                "args": [
                    [
                        {"channel": public, "name": "one", "data": "1"},
                        {"channel": presence, "name": "two", "data": "2", "info": "user_count"},
                        {"channel": public, "name": "three", "data": "3", "info": "subscription_count"},
                    ]
                ],
            }
        ],
    )

    assert results == [{"status": 200, "body": {"batch": [{}, {"user_count": 1}, {"subscription_count": 1}]}}]
    assert [(f["channel"], f["event"]) for f in [await client.next_event() for _ in range(3)]] == [
        (public, "one"),
        (presence, "two"),
        (public, "three"),
    ]


async def test_channel_queries_answer_what_the_subscribers_created(
    server: ServerProcess, numeric: Creds, connect: Connect, uid: str
) -> None:
    public, presence, cache = f"node-q-{uid}", f"presence-node-q-{uid}", f"cache-node-q-{uid}"
    a, b = await connect(server), await connect(server)
    await a.subscribe(public)
    await b.subscribe(public)
    await a.subscribe(presence, user_id="ann")
    await b.subscribe(presence, user_id="ann")

    results = run_node_sdk(
        server.port,
        numeric,
        [
            {"op": "get", "args": [{"path": "/channels", "params": {"filter_by_prefix": f"node-q-{uid}"}}]},
            {
                "op": "get",
                "args": [
                    {"path": "/channels", "params": {"filter_by_prefix": "presence-node-q-", "info": "user_count"}}
                ],
            },
            {"op": "get", "args": [{"path": f"/channels/{public}", "params": {"info": "subscription_count"}}]},
            {"op": "get", "args": [{"path": f"/channels/{presence}", "params": {"info": "user_count"}}]},
            {"op": "get", "args": [{"path": f"/channels/{presence}/users"}]},
            {"op": "trigger", "args": [cache, "state", {"v": 3}]},
            {"op": "get", "args": [{"path": f"/channels/{cache}", "params": {"info": "cache"}}]},
            {"op": "get", "args": [{"path": f"/channels/{public}", "params": {"info": "user_count"}}]},
            {"op": "get", "args": [{"path": f"/channels/{public}/users"}]},
        ],
    )

    assert results[0] == {"status": 200, "body": {"channels": {public: {}}}}
    assert results[1]["status"] == 200
    assert results[1]["body"]["channels"][presence] == {"user_count": 1}
    assert results[2] == {"status": 200, "body": {"occupied": True, "subscription_count": 2}}
    assert results[3] == {"status": 200, "body": {"occupied": True, "user_count": 1}}
    assert results[4] == {"status": 200, "body": {"users": [{"id": "ann"}]}}
    assert results[5] == {"status": 200, "body": {}}
    cached = results[6]["body"]["cache"]
    assert results[6]["body"]["occupied"] is False
    assert (json.loads(cached["data"]), 0 < cached["ttl"] <= 1800) == ({"v": 3}, True)
    assert results[7] == {"status": 400, "body": {"error": "info=user_count is only available for presence channels"}}
    assert results[8] == {"status": 400, "body": {"error": "Users can only be listed for presence channels"}}


async def test_send_to_user_and_terminate_connections(
    server: ServerProcess, numeric: Creds, connect: Connect, uid: str
) -> None:
    user, channel = f"node-user-{uid}", f"node-term-{uid}"
    phone, laptop, bystander = await connect(server), await connect(server), await connect(server)
    await phone.signin(user)
    await laptop.signin(user)
    await bystander.subscribe(channel)

    results = run_node_sdk(
        server.port,
        numeric,
        [
            {"op": "sendToUser", "args": [user, "note", {"hi": True}]},
            {"op": "terminateUserConnections", "args": [user]},
            {"op": "trigger", "args": [channel, "after", "x"]},
        ],
    )

    assert results == [{"status": 200, "body": {}}] * 3
    for client in (phone, laptop):
        assert json.loads((await client.expect_event(f"#server-to-user-{user}", "note"))["data"]) == {"hi": True}
        assert await client.closed() == 4009
    await bystander.expect_event(channel, "after")


async def test_errors_reach_the_node_sdk_as_status_and_json(server: ServerProcess, numeric: Creds) -> None:
    wrong_secret = Creds(numeric.id, numeric.key, "not-the-secret")
    unknown_app = Creds("999999", numeric.key, numeric.secret)

    results = run_node_sdk(server.port, wrong_secret, [{"op": "get", "args": [{"path": "/channels"}]}])
    results += run_node_sdk(server.port, unknown_app, [{"op": "get", "args": [{"path": "/channels"}]}])

    assert results == [
        {"status": 401, "body": {"error": "Invalid signature"}},
        {"status": 404, "body": {"error": "App not found"}},
    ]
