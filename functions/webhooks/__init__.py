"""Webhook deliveries from the SQS queue, with partial batch failures."""
