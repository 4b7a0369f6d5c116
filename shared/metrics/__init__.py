"""Metrics: one small protocol; Prometheus for the local server, CloudWatch EMF in Lambda."""
