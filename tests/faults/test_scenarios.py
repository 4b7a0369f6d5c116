"""#19's scenarios that held, kept holding: the code of ``python -m bench.faults`` (bench/faults/) with fewer
clients and shorter bounds, so each runs in seconds. The full runs and their figures:
docs/operating-limits.md#re-running-the-scenarios.
"""

from __future__ import annotations

import pytest

from bench.faults import churn, fuzzing, lifecycle, webhooks

pytestmark = pytest.mark.redis


def no_bug_logged(log: dict[str, object]) -> bool:
    return log["tracebacks"] == 0


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_sigterm_tells_every_client_4200_at_once_flushes_the_departures_and_exits_0(store: str) -> None:
    # On Redis a node used to drain its webhook queue before its handlers had queued the departures: it exited
    # at once, every departure left in Redis for another node (none here) to send.
    result = await lifecycle.sigterm(clients=40, store=store)
    assert result["close_codes"] == {4200: 40}, result
    assert result["closed_after_s"]["max"] < 2.0, result
    assert result["exit_code"] == 0
    # 40 channels vacated, 20 members removed, the presence channel vacated: all due 3 s later, all sent before exit.
    assert result["webhooks_expected"] == result["webhooks_delivered"] == 61, result
    assert result["webhooks_duplicated"] == result["webhooks_unexpected"] == 0, result
    assert result["log"]["error_lines"] == 0 and no_bug_logged(result["log"]), result
    if store == "redis":
        assert result["connections_left_in_store"] == result["webhook_jobs_left_in_queue"] == 0, result


async def test_a_killed_nodes_members_are_removed_by_the_survivor_once_within_the_lease() -> None:
    lease = 2.0
    result = await lifecycle.sigkill(members=8, lease=lease)
    assert result["all_removed"], result
    # The lease is the promise; one more second for a loaded machine (as tests/redis/test_node_failure.py).
    assert result["removed_after_s"]["max"] <= lease + 1.0, result
    assert result["member_removed_frames"] == {"distinct": 8, "duplicated": 0}, result
    assert result["member_removed_webhooks"] == {"distinct": 8, "duplicated": 0}, result
    assert result["survivor_lists"] == ["observer"]
    # A peer's death is an event the cluster handles, not an error: what was buffered for it is dropped quietly.
    assert result["log"]["error_lines"] == 0 and no_bug_logged(result["log"]), result


async def test_connect_subscribe_cycles_leave_no_descriptor_and_no_connection_behind() -> None:
    result = await churn.cycles(cycles=800, concurrency=10, store="redis", every=200, rate=400.0, pause=1.0)
    assert result["failures"] == 0, result
    sockets = result["tcp_sockets"]
    assert sockets["after"]["clients"] == 0, result
    # Every descriptor but the Redis pool's (which grows with the commands in flight at once, up to its size).
    assert (
        result["fds"]["after"] - sockets["after"]["outgoing"] == result["fds"]["before"] - sockets["before"]["outgoing"]
    ), result
    assert result["connected_after"] == 0
    assert result["log"]["error_lines"] == 0 and no_bug_logged(result["log"]), result


async def test_every_webhook_a_down_receiver_missed_arrives_once_when_it_is_back() -> None:
    result = await webhooks.receiver_down(down=3.0, rate=3.0, max_backoff=1.0, delay=0.5)
    assert result["complete"], result
    assert result["events_delivered"] == result["events_expected"], result
    assert result["events_duplicated"] == result["unexpected"] == 0, result
    # A retried channel_occupied of a channel that is empty again is dropped (docs/webhooks.md#retries-and-losses).
    assert result["superseded_delivered"] == 0, result
    assert result["lost"] == 0
    assert all(no_bug_logged(log) for log in result["log"]), result


async def test_random_frames_and_rest_calls_get_no_5xx_and_log_no_bug() -> None:
    result = await fuzzing.fuzz(seconds=6.0, sockets=3, rest=2, seed=19)
    assert result["rest_calls"] > 0 and result["frames"] > 0, result
    assert result["status_5xx"] == 0, result["server_errors"]
    assert result["nodes_alive"] == [True, True] and result["health"] == [200, 200], result
    assert all(log["error_lines"] == 0 and no_bug_logged(log) for log in result["log"]), result


async def test_every_member_is_back_in_every_roster_after_redis_restarts_empty() -> None:
    """Twenty members join at once on two nodes, twice (first, and after Redis came back empty): each client's
    roster, kept as pusher-js keeps it, must list everyone; a peer's member_added that overtook a joiner's own
    subscription_succeeded made some clients miss a member (docs/operating-limits.md)."""
    result = await lifecycle.redis_restart(members=20, down=1.0)
    assert result["converged"], result
    assert result["rejoined"] == 20 and result["nodes_list"] == [20, 20], result
    assert set(result["close_codes"]) == {4200}, result  # pusher-js reconnects at once after 4200
    assert result["rosters_exact_before"] == result["rosters_exact_after"] == 20, result["rosters_wrong"]
    # The cluster's own ERROR line about its lost bus is expected (rate-limited); a traceback is not.
    assert all(no_bug_logged(log) for log in result["log"]), result
