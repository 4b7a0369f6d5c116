// Validates webhook requests with the official Node `pusher` SDK, as a receiver written in Node would.
// stdin: {"app": {appId, key, secret}, "requests": [{headers (lower-case names), rawBody}]}
// stdout: [{"valid": bool, "events": [...] | null, "time_ms": number | null}] in the same order.
import { readFileSync } from "node:fs";
import Pusher from "pusher";

const input = JSON.parse(readFileSync(0, "utf8"));
const pusher = new Pusher({ ...input.app, useTLS: false });
const results = input.requests.map((request) => {
  const webhook = pusher.webhook({ headers: request.headers, rawBody: request.rawBody });
  const valid = webhook.isValid();
  return {
    valid,
    events: valid ? webhook.getEvents() : null,
    time_ms: valid ? webhook.getTime().getTime() : null,
  };
});
process.stdout.write(JSON.stringify(results));
