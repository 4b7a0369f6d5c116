// Unit tests of the CloudFront Function (rewrite.js) on the URLs real pusher-js clients request.
//
// Run: node --test cdk/cloudfront/   (tests/cdk/test_edge.py runs it too)
//
// The URLs are not written by hand: a real pusher-js 8.6 client connects to a local HTTP server that
// records the WebSocket upgrade request line, exactly what CloudFront would receive, and the function is
// run on the CloudFront event built from it. The function is loaded the way CloudFront runs it: a plain
// script (no module system) defining a global `handler`.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import vm from 'node:vm';

import Pusher from 'pusher-js';

const SOURCE = readFileSync(new URL('./rewrite.js', import.meta.url), 'utf8');

function loadHandler(source = SOURCE) {
  const context = {};
  vm.runInNewContext(source, context);
  // Objects made inside the sandbox have its own Object prototype: hand back plain copies to compare.
  return (event) => JSON.parse(JSON.stringify(context.handler(event)));
}

// The viewer-request event CloudFront builds for a request line (querystring as name -> {value, multiValue}).
function eventFor(path) {
  const url = new URL(path, 'https://d111111abcdef8.cloudfront.net');
  const querystring = {};
  for (const [name, value] of url.searchParams) {
    if (querystring[name]) {
      const entry = querystring[name];
      entry.multiValue = entry.multiValue || [{ value: entry.value }];
      entry.multiValue.push({ value });
    } else {
      querystring[name] = { value };
    }
  }
  return {
    version: '1.0',
    context: { eventType: 'viewer-request', distributionDomainName: 'd111111abcdef8.cloudfront.net' },
    viewer: { ip: '198.51.100.7' },
    request: { method: 'GET', uri: url.pathname, querystring, headers: {}, cookies: {} },
  };
}

// The path + query string a real pusher-js client requests when it opens its WebSocket.
async function pusherJsRequestPath(key, options = {}) {
  const server = createServer();
  const seen = new Promise((resolve) => {
    server.on('upgrade', (request, socket) => {
      resolve(request.url);
      socket.destroy();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = new Pusher(key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: server.address().port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    ...options,
  });
  try {
    return await seen;
  } finally {
    client.disconnect();
    await new Promise((resolve) => server.close(resolve));
  }
}

const handler = loadHandler();

describe('pusher-js URLs are rewritten to the stage root with the key in the query string', () => {
  let path;
  before(async () => {
    path = await pusherJsRequestPath('app-key');
  });

  it('is the URL pusher-js 8 really requests', () => {
    assert.match(path, /^\/app\/app-key\?protocol=7&client=js&version=8\.\d+\.\d+&flash=false$/);
  });

  it('targets the stage root and passes app_key first, then every pusher-js parameter', () => {
    const result = handler(eventFor(path));
    assert.equal(result.uri, '/prod');
    assert.deepEqual(Object.keys(result.querystring), ['app_key', 'protocol', 'client', 'version', 'flash']);
    assert.deepEqual(result.querystring.app_key, { value: 'app-key' });
    assert.deepEqual(result.querystring.protocol, { value: '7' });
    assert.deepEqual(result.querystring.client, { value: 'js' });
    assert.equal(result.querystring.flash.value, 'false');
  });

  it('keeps the method and headers (the WebSocket upgrade headers must reach API Gateway)', () => {
    const event = eventFor(path);
    event.request.headers = { 'sec-websocket-key': { value: 'dGhlIHNhbXBsZSBub25jZQ==' } };
    const result = handler(event);
    assert.equal(result.method, 'GET');
    assert.deepEqual(result.headers, { 'sec-websocket-key': { value: 'dGhlIHNhbXBsZSBub25jZQ==' } });
  });
});

describe('keys in the shapes apps use', () => {
  for (const key of ['9f86d081884c7d659a2f', 'numeric-key', 'Key_With.Dots~1']) {
    it(`rewrites a pusher-js connection for key ${key}`, async () => {
      const result = handler(eventFor(await pusherJsRequestPath(key)));
      assert.equal(result.uri, '/prod');
      assert.equal(result.querystring.app_key.value, key);
    });
  }
});

describe('requests that are not a pusher-js connection', () => {
  for (const path of ['/', '/app', '/app/', '/app/a/b', '/apps/1/events', '/app/key%20space', '/favicon.ico', '/prod']) {
    it(`answers 404 for ${path} without reaching the WebSocket API`, () => {
      const result = handler(eventFor(path));
      assert.equal(result.statusCode, 404);
      assert.equal(result.uri, undefined);
    });
  }

  it('accepts a trailing slash after the key', () => {
    assert.equal(handler(eventFor('/app/app-key/?protocol=7')).querystring.app_key.value, 'app-key');
  });
});

describe('the key always comes from the path', () => {
  it('overrides an app_key the client sent in the query string', () => {
    const result = handler(eventFor('/app/real-key?app_key=forged&protocol=7'));
    assert.deepEqual(result.querystring.app_key, { value: 'real-key' });
    assert.deepEqual(Object.keys(result.querystring), ['app_key', 'protocol']);
  });

  it('keeps repeated parameters as CloudFront gave them', () => {
    const result = handler(eventFor('/app/k?protocol=7&x=1&x=2'));
    assert.deepEqual(result.querystring.x.multiValue, [{ value: '1' }, { value: '2' }]);
  });

  it('copes with a request that has no query string at all', () => {
    const event = eventFor('/app/k');
    delete event.request.querystring;
    assert.deepEqual(handler(event).querystring, { app_key: { value: 'k' } });
  });
});

describe('the stage path placeholder', () => {
  it('is a single assignment the CDK app can substitute', () => {
    assert.equal(SOURCE.match(/^var STAGE_PATH = '\/prod';$/gm).length, 1);
    const custom = loadHandler(SOURCE.replace("var STAGE_PATH = '/prod';", "var STAGE_PATH = '/live';"));
    assert.equal(custom(eventFor('/app/k?protocol=7')).uri, '/live');
  });
});
