"""AWS Lambda entry points: thin handlers that parse API Gateway / SQS / EventBridge events and call the core."""
