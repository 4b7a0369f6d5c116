// CloudFront Function (viewer request, runtime cloudfront-js-2.0) in front of the WebSocket API.
//
// pusher-js always connects to `{wsPath}/app/{key}?protocol=7&client=js&version=...&flash=false`, but an
// API Gateway WebSocket stage only serves its root: any path after the stage is refused with 403
// (https://robanderson.dev/blog/cloudfront-url-transform.html). This rewrites the path to the stage root
// and moves the key into the query string (`app_key`), where the $connect handler reads it. The key from
// the path always wins over an `app_key` the client may have sent. Anything else on this behavior gets a
// 404 here, so stray requests never reach (and are never billed by) the WebSocket API.
//
// Keys must be URL-safe (letters, digits, `-`, `_`, `.`, `~`): they travel unchanged from the path to
// the query string, so nothing needs decoding or re-encoding in between.
//
// STAGE_PATH is replaced at synth time by cdk/components/edge.py with the deployed stage's path.
var STAGE_PATH = '/prod';
var APP_PATH = /^\/app\/([A-Za-z0-9._~-]+)\/?$/;

function handler(event) {
    var request = event.request;
    var match = APP_PATH.exec(request.uri);
    if (!match) {
        return {
            statusCode: 404,
            statusDescription: 'Not Found',
            headers: { 'content-type': { value: 'text/plain' } },
            body: 'sockless: WebSocket clients connect to /app/{key}\n'
        };
    }
    var querystring = { app_key: { value: match[1] } };
    var original = request.querystring || {};
    for (var name in original) {
        if (name !== 'app_key') {
            querystring[name] = original[name];
        }
    }
    request.uri = STAGE_PATH;
    request.querystring = querystring;
    return request;
}
