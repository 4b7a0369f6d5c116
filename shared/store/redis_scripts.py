"""The Lua scripts of ``RedisChannelStore``: each store decision is one script, so it is atomic across processes.

Every script gets one key, the app's key prefix (``<prefix>:{<app_id>}:``), and builds the app's other
keys from it. The ``{app_id}`` hash tag puts all of an app's keys in one cluster slot, which is what lets
a script touch them together on Redis Cluster and ElastiCache Serverless (cluster mode only).

The key layout under that prefix ``P`` is in ``shared/redis/keys.py`` (``RedisKeys``), with the keys outside
the apps' slots.

Every key a script writes gets ``EXPIRE ttl`` (when ttl > 0), so state nobody writes any more disappears;
live nodes refresh the keys of their own sockets with ``REFRESH``.
"""

from __future__ import annotations

_PRELUDE = """
local P = KEYS[1]
local ttl = tonumber(ARGV[1])
local function touch(key)
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end
-- The order of a subscription change (JoinResult.version): this server's clock in microseconds. One app's keys
-- live on one server (the hash tag), so its channels' changes are ordered by one clock.
local function version()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function leave(sid, ch)
  local chk = P .. 'ch:' .. ch
  local mark = redis.call('HGET', chk, sid)
  if not mark then
    return {ch, 0, 0, '', redis.call('HLEN', chk)}
  end
  redis.call('HDEL', chk, sid)
  local removed = ''
  if mark ~= '' then
    local uid = string.sub(mark, 2)
    local mc = P .. 'mc:' .. ch
    if redis.call('HINCRBY', mc, uid, -1) <= 0 then
      redis.call('HDEL', mc, uid)
      redis.call('HDEL', P .. 'mi:' .. ch, uid)
      removed = uid
    end
  end
  local count = redis.call('HLEN', chk)
  local vacated = 0
  if count == 0 then
    vacated = 1
    redis.call('SREM', P .. 'chans', ch)
  end
  return {ch, 1, vacated, removed, count, version()}
end
local function unwatch(sid, c)
  if c.w then
    for _, w in ipairs(cjson.decode(c.w)) do redis.call('SREM', P .. 'w:' .. w, sid) end
  end
end
"""

# ARGV: ttl, socket id, record JSON, max connections (-1: none), node id ("" on Lambda),
#       API Gateway connectionId ("" on the local server), now (seconds)
ADD_CONNECTION = (
    _PRELUDE
    + """
local sid, node, max = ARGV[2], ARGV[5], tonumber(ARGV[4])
local conns = P .. 'conns'
if max >= 0 and redis.call('HEXISTS', conns, sid) == 0 and redis.call('HLEN', conns) >= max then
  return 0
end
redis.call('HSET', conns, sid, ARGV[3])
touch(conns)
redis.call('ZADD', P .. 'seen', ARGV[7], sid)
touch(P .. 'seen')
if ARGV[6] ~= '' then
  redis.call('HSET', P .. 'cid', sid, ARGV[6])
  touch(P .. 'cid')
end
if node ~= '' then
  redis.call('HSET', P .. 'sn', sid, node)
  touch(P .. 'sn')
  redis.call('SADD', P .. 'node:' .. node, sid)
  touch(P .. 'node:' .. node)
end
return 1
"""
)

# ARGV: ttl, socket id, user id, user_data, watchlist JSON array -> -1 unknown socket, 1 first socket, 0 else
SIGN_IN = (
    _PRELUDE
    + """
local sid, uid = ARGV[2], ARGV[3]
local conns = P .. 'conns'
local rec = redis.call('HGET', conns, sid)
if not rec then return -1 end
local c = cjson.decode(rec)
unwatch(sid, c)
if c.u then redis.call('SREM', P .. 'u:' .. c.u, sid) end
c.u = uid
c.d = ARGV[4]
c.w = ARGV[5]
redis.call('HSET', conns, sid, cjson.encode(c))
for _, w in ipairs(cjson.decode(ARGV[5])) do
  redis.call('SADD', P .. 'w:' .. w, sid)
  touch(P .. 'w:' .. w)
end
local uk = P .. 'u:' .. uid
redis.call('SADD', uk, sid)
touch(uk)
if redis.call('SCARD', uk) == 1 then return 1 end
return 0
"""
)

# ARGV: ttl, socket id -> nil, or {record, user offline 0/1, {{channel, left, vacated, removed user, count[, version]},
#       ...}}
REMOVE_CONNECTION = (
    _PRELUDE
    + """
local sid = ARGV[2]
local conns = P .. 'conns'
local rec = redis.call('HGET', conns, sid)
if not rec then return false end
redis.call('HDEL', conns, sid)
redis.call('ZREM', P .. 'seen', sid)
redis.call('HDEL', P .. 'cid', sid)
local c = cjson.decode(rec)
if c.n then
  redis.call('HDEL', P .. 'sn', sid)
  redis.call('SREM', P .. 'node:' .. c.n, sid)
end
local sck = P .. 'sc:' .. sid
local left = {}
for i, ch in ipairs(redis.call('SMEMBERS', sck)) do left[i] = leave(sid, ch) end
redis.call('DEL', sck)
unwatch(sid, c)
local offline = 0
if c.u then
  local uk = P .. 'u:' .. c.u
  if redis.call('SREM', uk, sid) == 1 and redis.call('SCARD', uk) == 0 then offline = 1 end
end
return {rec, offline, left}
"""
)

# ARGV: ttl, socket id, channel, member user id ("" if none), user_info JSON, max members
# -> {joined, occupied, member_added, count[, version, presence data JSON when joined as a member]}, or {-1} when
#    the presence channel is full
SUBSCRIBE = (
    _PRELUDE
    + """
local sid, ch, uid = ARGV[2], ARGV[3], ARGV[4]
if redis.call('HEXISTS', P .. 'conns', sid) == 0 then return {0, 0, 0, 0} end
local chk = P .. 'ch:' .. ch
if redis.call('HEXISTS', chk, sid) == 1 then return {0, 0, 0, redis.call('HLEN', chk)} end
local added, mark = 0, ''
if uid ~= '' then
  local mc = P .. 'mc:' .. ch
  if redis.call('HEXISTS', mc, uid) == 0 then
    if redis.call('HLEN', mc) >= tonumber(ARGV[6]) then return {-1} end
    redis.call('HSET', P .. 'mi:' .. ch, uid, ARGV[5])
    touch(P .. 'mi:' .. ch)
    added = 1
  end
  redis.call('HINCRBY', mc, uid, 1)
  touch(mc)
  mark = '=' .. uid
end
local occupied = 0
if redis.call('EXISTS', chk) == 0 then
  occupied = 1
  redis.call('SADD', P .. 'chans', ch)
  touch(P .. 'chans')
end
redis.call('HSET', chk, sid, mark)
touch(chk)
redis.call('SADD', P .. 'sc:' .. sid, ch)
touch(P .. 'sc:' .. sid)
local out = {1, occupied, added, redis.call('HLEN', chk), version()}
if uid ~= '' then
  -- The roster as the JSON of subscription_succeeded's data, read in the same atomic step as the join:
  -- one round trip, and the node neither parses nor re-encodes hundreds of members per join.
  local flat = redis.call('HGETALL', P .. 'mi:' .. ch)
  local ids, hash = {}, {}
  for i = 1, #flat, 2 do
    local id = cjson.encode(flat[i])
    ids[#ids + 1] = id
    hash[#hash + 1] = id .. ':' .. flat[i + 1]
  end
  out[6] = '{"presence":{"ids":[' .. table.concat(ids, ',') .. '],"hash":{' .. table.concat(hash, ',')
    .. '},"count":' .. #ids .. '}}'
end
return out
"""
)

# ARGV: ttl, socket id, channel -> {channel, left, vacated, removed user, count[, version]}
UNSUBSCRIBE = (
    _PRELUDE
    + """
local sid, ch = ARGV[2], ARGV[3]
local result = leave(sid, ch)
if result[2] == 1 then redis.call('SREM', P .. 'sc:' .. sid, ch) end
return result
"""
)

# ARGV: ttl, channel prefix -> flat {channel, subscription count, member count, ...}
CHANNELS = (
    _PRELUDE
    + """
local prefix = ARGV[2]
local out = {}
for _, ch in ipairs(redis.call('SMEMBERS', P .. 'chans')) do
  if string.sub(ch, 1, #prefix) == prefix then
    local count = redis.call('HLEN', P .. 'ch:' .. ch)
    if count > 0 then
      out[#out + 1] = ch
      out[#out + 1] = count
      out[#out + 1] = redis.call('HLEN', P .. 'mc:' .. ch)
    end
  end
end
return out
"""
)

# ARGV: ttl, user ids... -> the ones with a signed-in socket
ONLINE = (
    _PRELUDE
    + """
local out = {}
for i = 2, #ARGV do
  if redis.call('EXISTS', P .. 'u:' .. ARGV[i]) == 1 then out[#out + 1] = ARGV[i] end
end
return out
"""
)

# ARGV: ttl, socket id, now (seconds) -> 1, or 0 when the connection is gone
SEEN = (
    _PRELUDE
    + """
if redis.call('HEXISTS', P .. 'conns', ARGV[2]) == 0 then return 0 end
redis.call('ZADD', P .. 'seen', ARGV[3], ARGV[2])
touch(P .. 'seen')
return 1
"""
)

# ARGV: ttl, node id ("" for none), socket ids... -> how many of them still exist
# Refreshes the TTL of every key a live socket needs, so long-lived idle sockets never lose their state.
REFRESH = (
    _PRELUDE
    + """
local conns = P .. 'conns'
local seen = {}
local function once(key)
  if not seen[key] then
    seen[key] = true
    touch(key)
  end
end
once(conns)
once(P .. 'chans')
once(P .. 'seen')
once(P .. 'cid')
if ARGV[2] ~= '' then
  once(P .. 'sn')
  once(P .. 'node:' .. ARGV[2])
end
local alive = 0
for i = 3, #ARGV do
  local sid = ARGV[i]
  local rec = redis.call('HGET', conns, sid)
  if rec then
    alive = alive + 1
    once(P .. 'sc:' .. sid)
    for _, ch in ipairs(redis.call('SMEMBERS', P .. 'sc:' .. sid)) do
      once(P .. 'ch:' .. ch)
      once(P .. 'mc:' .. ch)
      once(P .. 'mi:' .. ch)
    end
    local c = cjson.decode(rec)
    if c.u then once(P .. 'u:' .. c.u) end
    if c.w then
      for _, w in ipairs(cjson.decode(c.w)) do once(P .. 'w:' .. w) end
    end
  end
end
return alive
"""
)
