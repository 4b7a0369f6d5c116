"""The Lambda Invoke API (``POST /2015-03-31/functions/{name}/invocations``) the handlers call for the
welcome, the fan-out chunks and Lambda webhook targets; authorized with ``lambda:InvokeFunction``."""

from __future__ import annotations

import json

from aiohttp import web

from local_server.emulator.iam import Iam
from local_server.emulator.lambdas import FunctionError, LambdaService
from local_server.emulator.management import aws_error

MAX_EVENT_PAYLOAD = 256 * 1024  # Lambda asynchronous invocation payload


class InvokeApi:
    def __init__(self, lambdas: LambdaService, iam: Iam | None = None) -> None:
        self.lambdas = lambdas
        self.iam = iam

    async def invoke(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if self.iam is not None:
            needs = self.iam.lambda_invoke(name, request.query.get("Qualifier"))
            denial = self.iam.check(request.headers.get("Authorization"), needs)
            if denial is not None:
                status, headers, body = self.iam.rest_denial(denial)
                return web.Response(status=status, body=body, headers=headers)
        if not self.lambdas.exists(name):
            return aws_error(404, "ResourceNotFoundException", f"Function not found: {name}")
        raw = await request.read()
        if kind == "Event" and len(raw) > MAX_EVENT_PAYLOAD:
            return aws_error(413, "RequestEntityTooLargeException", "Request must be smaller than 262144 bytes")
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            return aws_error(400, "InvalidRequestContentException", "Could not parse request body into json")
        if kind == "DryRun":
            return web.Response(status=204)
        if kind == "Event":
            self.lambdas.invoke_event(name, payload)
            return web.Response(status=202)
        try:
            result = await self.lambdas.invoke(name, payload)
        except FunctionError as exc:
            return web.json_response(exc.payload, headers={"X-Amz-Function-Error": "Unhandled"})
        return web.json_response(result, headers={"X-Amz-Executed-Version": "$LATEST"})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/2015-03-31/functions/{name}/invocations", self.invoke)
