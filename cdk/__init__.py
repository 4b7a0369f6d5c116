"""The AWS CDK app that deploys sockless: one stack, one construct per concern (``cdk/components/``)."""
