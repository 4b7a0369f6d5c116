"""The local server's real-client suites, run a second time against the Lambda code path.

pusher-js under Node, the Node ``pusher`` SDK and the Python ``pusher`` SDK talk to the emulator (API
Gateway + Lambda emulated, DynamoDB and SQS in moto) exactly as they talk to the local server; the tests are
the very same functions, imported from ``tests/e2e`` and ``tests/rest``, with ``server``/``start_server``
now starting ``--emulate-lambda`` (``tests/emulator/conftest.py``). Left out, with what happens instead
stated in ``test_aws_behaviour.py``: custom close codes (refusal close code, terminate's 4009), server-side
heartbeats and SIGTERM's 4200 (API Gateway has neither), the ordered client-event burst (every frame is its
own concurrent invocation) and the quota slot freed at the instant of the close ($disconnect runs after).
"""

from __future__ import annotations

import pytest

from tests.e2e.test_channels import (  # noqa: F401
    auth_endpoint,
    test_cache_channel_replays_the_last_event_and_reports_a_miss_when_empty,
    test_client_events_on_a_public_channel_are_refused,
    test_client_events_reach_the_others_but_are_not_echoed,
    test_invalid_channel_name_reaches_the_channel_as_a_subscription_error,
    test_presence_members_join_and_leave_once_per_user,
    test_private_channel_through_an_auth_endpoint_signed_by_the_python_sdk,
    test_private_channel_with_a_wrong_signature_is_refused,
    test_private_channel_with_channel_authorization,
    test_private_encrypted_channel_is_decrypted_by_pusher_js_only,
    test_public_channel_receives_an_event_triggered_by_the_sdk,
    test_subscription_count_follows_subscribers,
    test_trigger_with_a_socket_id_skips_that_socket_only,
)
from tests.e2e.test_connection import (  # noqa: F401
    gatekeeper,
    test_disallowed_origin_is_refused_with_4009_and_an_allowed_one_connects,
    test_pusher_js_connects_and_gets_a_numeric_socket_id,
    test_refused_app_stops_pusher_js_without_a_reconnect_loop,
)
from tests.e2e.test_users import (  # noqa: F401
    test_signin_then_send_to_user_from_both_sdks_reaches_every_connection_of_that_user,
    test_signin_with_a_wrong_signature_is_refused_with_4009,
    test_watchlist_reports_when_watched_users_come_online_and_go_offline,
)

pytestmark = pytest.mark.e2e
