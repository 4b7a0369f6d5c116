"""The Pusher REST API, transport-agnostic: an ``HttpRequest`` in, an ``HttpResponse`` out."""

from shared.http_api.base import HttpRequest, HttpResponse
from shared.http_api.router import RestApi

__all__ = ["HttpRequest", "HttpResponse", "RestApi"]
