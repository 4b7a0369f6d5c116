// Drives real pusher-js clients and the Node `pusher` SDK for sockless's end-to-end tests.
//
// Protocol (one JSON object per line):
//   stdin  {"id": 1, "cmd": "connect", ...}            a command
//   stdout {"id": 1, "ok": true, "result": ...}        its reply (or "ok": false, "error": "...")
//   stdout {"report": "state", "client": "a", ...}     something a client observed, with "t" (ms since epoch)
// Report kinds: state (connection state_change), error (connection 'error'), message (every frame the
// client received, before pusher-js handles it), event (a channel callback: data and metadata as pusher-js
// passed them), user (events on pusher.user, e.g. sendToUser), watchlist (pusher.user.watchlist).
//
// Auth is signed here, the way a customer's backend would sign it: HMAC-SHA256 hex of
// `socket_id:channel[:channel_data]` / `socket_id::user::user_data` with the app secret, returned as
// `key:signature`; encrypted channels also get shared_secret = base64(SHA256(channel || master key)).
// The server only ever sees the signatures, never the master key.

import { createHash, createHmac } from 'node:crypto';
import { createInterface } from 'node:readline';

// The Node build of pusher-js decrypts private-encrypted- channels when given a nacl implementation.
// `pusher-js/with-encryption` is the browser build (it needs `self`/`window`), so it cannot run in Node.
import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import nacl from 'tweetnacl';

const clients = new Map();
const originsByKey = new Map();

const DEFAULT_CHANNEL_EVENTS = [
  'pusher:subscription_succeeded',
  'pusher:subscription_error',
  'pusher:subscription_count',
  'pusher:cache_miss',
  'pusher:member_added',
  'pusher:member_removed',
];

function plain(value) {
  // Errors and pusher-js objects become JSON-safe values; anything unserialisable becomes a string.
  try {
    return JSON.parse(
      JSON.stringify(value, (_k, v) => (v instanceof Error ? { name: v.name, message: v.message, ...v } : v)),
    );
  } catch {
    return String(value);
  }
}

function write(obj) {
  process.stdout.write(JSON.stringify({ ...obj, t: Date.now() }) + '\n');
}

function report(kind, client, fields) {
  write({ report: kind, client, ...fields });
}

function hmac(secret, message) {
  return createHmac('sha256', secret).update(message).digest('hex');
}

// Origin headers for pusher-js's WebSocket (faye-websocket) are chosen per app key, from the URL it opens.
const OriginalWebSocket = Pusher.Runtime.getWebSocketAPI();
Pusher.Runtime.getWebSocketAPI = () =>
  function WebSocketWithOrigin(url, protocols, options) {
    const key = decodeURIComponent(new URL(url).pathname.split('/').pop());
    const origin = originsByKey.get(key);
    const opts = origin ? { ...(options || {}), headers: { Origin: origin } } : options;
    return new OriginalWebSocket(url, protocols, opts);
  };

function channelAuthorization(spec) {
  if (spec.authEndpoint) {
    return { endpoint: spec.authEndpoint, transport: 'ajax' };
  }
  return {
    customHandler: ({ socketId, channelName }, callback) => {
      const secret = spec.wrongSecret ? `${spec.secret}-wrong` : spec.secret;
      const result = {};
      let message = `${socketId}:${channelName}`;
      if (channelName.startsWith('presence-') && spec.user) {
        result.channel_data = JSON.stringify(spec.user);
        message += `:${result.channel_data}`;
      }
      result.auth = `${spec.key}:${hmac(secret, message)}`;
      if (channelName.startsWith('private-encrypted-') && spec.masterKeyBase64) {
        const masterKey = Buffer.from(spec.masterKeyBase64, 'base64');
        result.shared_secret = createHash('sha256')
          .update(Buffer.concat([Buffer.from(channelName), masterKey]))
          .digest('base64');
      }
      callback(null, result);
    },
  };
}

function userAuthentication(spec) {
  return {
    customHandler: ({ socketId }, callback) => {
      const userData = JSON.stringify(spec.signin);
      const secret = spec.wrongSecret ? `${spec.secret}-wrong` : spec.secret;
      callback(null, { auth: `${spec.key}:${hmac(secret, `${socketId}::user::${userData}`)}`, user_data: userData });
    },
  };
}

function membersOf(channel) {
  const members = {};
  channel.members.each((m) => {
    members[m.id] = m.info ?? null;
  });
  return { count: channel.members.count, me: plain(channel.members.me), members };
}

function bindChannelEvent(name, channel, event) {
  channel.bind(event, (data, metadata) => {
    const payload = event === 'pusher:subscription_succeeded' && channel.members ? membersOf(channel) : plain(data);
    report('event', name, { channel: channel.name, event, data: payload, metadata: plain(metadata ?? null) });
  });
}

function client(name) {
  const entry = clients.get(name);
  if (!entry) throw new Error(`no client named ${name}`);
  return entry;
}

function serverSdk(spec) {
  return new PusherServer({
    appId: spec.appId,
    key: spec.key,
    secret: spec.secret,
    host: spec.host ?? '127.0.0.1',
    port: String(spec.port),
    useTLS: false,
    ...(spec.masterKeyBase64 ? { encryptionMasterKeyBase64: spec.masterKeyBase64 } : {}),
  });
}

async function sdkReply(promise) {
  try {
    const response = await promise;
    return { status: response.status, body: await response.text() };
  } catch (err) {
    // pusher's RequestError carries the HTTP status and body of a refused call.
    if (err && err.status) return { status: err.status, body: err.body ?? String(err) };
    throw err;
  }
}

// Resolves true when `arm(done)` calls done, false after `ms` (a stalled round fails, it does not hang).
function within(ms, arm) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    arm(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

const commands = {
  connect(msg) {
    const spec = msg.spec;
    if (clients.has(msg.client)) throw new Error(`client ${msg.client} exists`);
    if (spec.origin) originsByKey.set(spec.key, spec.origin);
    const pusher = new Pusher(spec.key, {
      wsHost: spec.host ?? '127.0.0.1',
      wsPort: spec.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      cluster: 'mt1',
      disableStats: true,
      nacl,
      channelAuthorization: channelAuthorization(spec),
      userAuthentication: userAuthentication(spec),
      ...(spec.options ?? {}),
    });
    const name = msg.client;
    clients.set(name, { pusher, spec });
    pusher.connection.bind('state_change', ({ previous, current }) =>
      report('state', name, { previous, current, socket_id: pusher.connection.socket_id ?? null }),
    );
    pusher.connection.bind('error', (error) => report('error', name, { error: plain(error) }));
    pusher.connection.bind('message', (m) =>
      report('message', name, { event: m.event, channel: m.channel ?? null, data: plain(m.data), user_id: m.user_id ?? null }),
    );
    pusher.user.bind_global((event, data) => report('user', name, { event, data: plain(data) }));
    for (const status of ['online', 'offline']) {
      pusher.user.watchlist.bind(status, (data) => report('watchlist', name, { event: status, data: plain(data) }));
    }
    return null;
  },
  subscribe(msg) {
    const { pusher } = client(msg.client);
    const channel = pusher.subscribe(msg.channel);
    for (const event of [...DEFAULT_CHANNEL_EVENTS, ...(msg.events ?? [])]) bindChannelEvent(msg.client, channel, event);
    return null;
  },
  bind(msg) {
    const channel = client(msg.client).pusher.channel(msg.channel);
    if (!channel) throw new Error(`not subscribed to ${msg.channel}`);
    bindChannelEvent(msg.client, channel, msg.event);
    return null;
  },
  unsubscribe(msg) {
    client(msg.client).pusher.unsubscribe(msg.channel);
    return null;
  },
  trigger(msg) {
    const channel = client(msg.client).pusher.channel(msg.channel);
    if (!channel) throw new Error(`not subscribed to ${msg.channel}`);
    return channel.trigger(msg.event, msg.data);
  },
  members(msg) {
    const channel = client(msg.client).pusher.channel(msg.channel);
    if (!channel || !channel.members) throw new Error(`no presence channel ${msg.channel}`);
    return membersOf(channel);
  },
  signin(msg) {
    client(msg.client).pusher.signin();
    return null;
  },
  info(msg) {
    const { pusher } = client(msg.client);
    return { state: pusher.connection.state, socket_id: pusher.connection.socket_id ?? null };
  },
  disconnect(msg) {
    client(msg.client).pusher.disconnect();
    clients.delete(msg.client);
    return null;
  },
  // Frame-order rounds (#20), looped here so a round costs no Python round trip: `unsubscribe(name)` and
  // `subscribe(name)` in the same tick, as a single-page app does when a view is left and entered again,
  // then a publish through the server SDK that must reach the new subscription.
  async resubscribe_rounds(msg) {
    const { pusher } = client(msg.client);
    const sdk = serverSdk(msg.app);
    const timings = [];
    for (let round = 0; round < msg.rounds; round++) {
      const started = performance.now();
      pusher.unsubscribe(msg.channel);
      const channel = pusher.subscribe(msg.channel);
      const ok = await within(msg.timeoutMs, (done) => channel.bind('pusher:subscription_succeeded', done));
      if (!ok) return { failed: round, stage: 'subscription_succeeded', timings };
      const subscribed = performance.now();
      const arrived = within(msg.timeoutMs, (done) =>
        channel.bind('round', (data) => data && data.round === round && done()),
      );
      await sdk.trigger(msg.channel, 'round', { round });
      if (!(await arrived)) return { failed: round, stage: 'publish', timings };
      timings.push([subscribed - started, performance.now() - subscribed]);
    }
    return { failed: null, timings };
  },
  // Subscribe latency (bench/frame_order.py): a fresh channel each round, timed to subscription_succeeded.
  async subscribe_rounds(msg) {
    const { pusher } = client(msg.client);
    const timings = [];
    for (let round = 0; round < msg.rounds; round++) {
      const name = `${msg.prefix}-${round}`;
      const started = performance.now();
      const channel = pusher.subscribe(name);
      const ok = await within(msg.timeoutMs, (done) => channel.bind('pusher:subscription_succeeded', done));
      if (!ok) return { failed: round, timings };
      timings.push(performance.now() - started);
      pusher.unsubscribe(name);
    }
    return { failed: null, timings };
  },
  // `count` client events sent in one tick by `sender`; `receiver` must get them in that order.
  async burst_rounds(msg) {
    const sender = client(msg.sender).pusher.channel(msg.channel);
    const receiver = client(msg.receiver).pusher.channel(msg.channel);
    if (!sender || !receiver) throw new Error(`both clients must be subscribed to ${msg.channel}`);
    let got = [];
    let wake = null;
    receiver.bind(msg.event, (data) => {
      got.push(data);
      if (wake) wake();
    });
    const timings = [];
    for (let round = 0; round < msg.rounds; round++) {
      got = [];
      const started = performance.now();
      for (let n = 0; n < msg.count; n++) sender.trigger(msg.event, { round, n });
      const ok = await within(msg.timeoutMs, (done) => {
        wake = () => got.length >= msg.count && done();
        wake();
      });
      wake = null;
      const order = got.map((d) => (d.round === round ? d.n : `${d.round}:${d.n}`));
      if (!ok || order.some((n, i) => n !== i)) return { failed: round, order, timings };
      timings.push(performance.now() - started);
    }
    return { failed: null, timings };
  },
  async sdk_trigger(msg) {
    const params = msg.socket_id ? { socket_id: msg.socket_id } : undefined;
    return sdkReply(serverSdk(msg.app).trigger(msg.channels, msg.event, msg.data, params));
  },
  async sdk_send_to_user(msg) {
    return sdkReply(serverSdk(msg.app).sendToUser(msg.user_id, msg.event, msg.data));
  },
  async sdk_terminate_user(msg) {
    return sdkReply(serverSdk(msg.app).terminateUserConnections(msg.user_id));
  },
  quit() {
    for (const { pusher } of clients.values()) pusher.disconnect();
    setTimeout(() => process.exit(0), 10);
    return null;
  },
};

const rl = createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
    const handler = commands[msg.cmd];
    if (!handler) throw new Error(`unknown command ${msg.cmd}`);
    const result = await handler(msg);
    write({ id: msg.id, ok: true, result: result ?? null });
  } catch (err) {
    write({ id: msg?.id ?? null, ok: false, error: String(err?.stack ?? err) });
  }
});
// pytest closing our stdin means the test is over: never outlive it.
rl.on('close', () => process.exit(0));
