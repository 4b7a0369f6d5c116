"""The AWS fixtures (moto account, table, clock) of tests/aws, for the meter's tests."""

from tests.aws.conftest import aws, clock, dynamodb  # noqa: F401  (pytest fixtures)
