// Runs REST calls through the official Node `pusher` SDK (5.3.4) and prints one JSON array of results.
// Usage: node node_sdk.mjs '{"port":6001,"appId":"12345","key":"...","secret":"...","calls":[{"op":"trigger","args":[...]}]}'
// Each result is {"status": <http status>, "body": <parsed JSON or raw text>}; SDK-side errors (no HTTP
// status) come back as {"status": null, "error": "..."} so the Python test sees exactly what the SDK saw.
import Pusher from "pusher";

const spec = JSON.parse(process.argv[2]);
const pusher = new Pusher({
  appId: spec.appId,
  key: spec.key,
  secret: spec.secret,
  host: "127.0.0.1",
  port: spec.port,
  useTLS: false,
});

const parse = (text) => {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
};

const results = [];
for (const call of spec.calls) {
  try {
    const response = await pusher[call.op](...call.args);
    results.push({ status: response.status, body: parse(await response.text()) });
  } catch (err) {
    if (err.status !== undefined) {
      results.push({ status: err.status, body: parse(err.body) });
    } else {
      results.push({ status: null, error: String(err && err.message) });
    }
  }
}
process.stdout.write(JSON.stringify(results));
