"""The local server's REST (Python and Node SDKs) and webhook suites, run a second time on the Lambda path.

Same functions as ``tests/rest`` and ``tests/webhooks``; ``server``/``start_server`` start the emulator
(``tests/emulator/conftest.py``), so every REST call goes through the HTTP API and ``functions/http_api``,
and every webhook through SQS and ``functions/webhooks``, validated by both official SDKs.

Left out (``test_aws_behaviour.py`` states the AWS outcome): terminate's 4009 close code (API Gateway
closes with 1000); a channel list read right after an unsubscribe frame (the frame is an invocation that
may not have run yet); webhook *order* across events (separate SQS messages); the Python SDK's broken
terminate path, which on AWS meets CloudFront's 404 for non-``/apps`` paths, not the REST API's JSON 404.
"""

from __future__ import annotations

import pytest

from tests.rest.test_node_sdk import (  # noqa: F401
    test_channel_queries_answer_what_the_subscribers_created,
    test_errors_reach_the_node_sdk_as_status_and_json,
    test_trigger_batch_answers_one_info_entry_per_event,
    test_trigger_with_info_publishes_and_reports_the_counts,
)
from tests.rest.test_python_sdk import (  # noqa: F401
    test_channel_refuses_attributes_its_type_does_not_have,
    test_channel_reports_occupancy_and_the_counts_of_its_type,
    test_channel_returns_the_cached_event_of_a_cache_channel,
    test_channels_refuses_user_count_unless_limited_to_presence_channels,
    test_gets_signed_with_body_md5_are_accepted_and_a_wrong_md5_is_not,
    test_send_to_user_reaches_every_connection_signed_in_as_that_user,
    test_trigger_batch_returns_info_aligned_with_the_request,
    test_trigger_batch_without_info_answers_an_empty_object,
    test_trigger_reaches_subscribers_but_not_the_excluded_socket,
    test_trigger_to_many_channels_delivers_once_per_channel,
    test_users_is_only_for_presence_channels,
    test_users_lists_each_presence_member_once,
)
from tests.webhooks.test_delay import (  # noqa: F401
    test_departure_after_the_delay_is_delivered_then_a_rejoin_is_announced,
    test_public_channel_resubscribed_within_the_delay_is_never_vacated,
    test_vacated_and_member_removed_wait_the_default_3_seconds,
)
from tests.webhooks.test_events import (  # noqa: F401
    test_both_sdks_reject_a_webhook_signed_with_another_secret_or_altered,
    test_cache_miss_when_a_cache_channel_has_nothing_cached,
    test_custom_headers_are_sent_but_cannot_replace_the_signature,
    test_occupied_and_vacated_are_signed_and_both_sdks_accept_them,
    test_presence_members_added_and_removed_once_per_user,
    test_subscription_count_follows_subscribers,
)

pytestmark = pytest.mark.e2e
