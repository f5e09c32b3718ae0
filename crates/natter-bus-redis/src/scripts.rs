//! The Lua scripts. Each runs atomically in Redis, so what it reads and writes is one step
//! in the chat's history (like centrifuge's `broker_history_add_stream.lua` and
//! `presence_add.lua`). redis-rs sends them with EVALSHA and loads them again after a Redis
//! restart empties the script cache.

use std::sync::LazyLock;

use redis::Script;

/// Applies a batch's buffer operations and publishes the batch, in one step.
///
/// `KEYS[1]` the turn hash, `KEYS[2]` the token stream; `ARGV[1]` the channel, `ARGV[2]`
/// the envelope (JSON ending in `}`), `ARGV[3]` the buffer TTL in ms, `ARGV[4]` the most
/// tokens buffered, then the operations in publish order:
/// `S mid turn-json` (a turn started: reset the stream, name the turn),
/// `T mid index text` (a token: appended when it is the running turn's next index),
/// `E mid` (the turn ended: drop the buffer if it is the running one).
/// Moves the chat's offset `off` forward once (to Redis's time in µs, or one past the last
/// offset if that is later: it keeps rising when the hash expires or Redis restarts),
/// publishes the envelope with `"off":N` appended and returns N.
pub(crate) static PUBLISH_CHAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local off = math.max((tonumber(redis.call('HGET', KEYS[1], 'off')) or 0) + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('HSET', KEYS[1], 'off', string.format('%d', off))
local cur = redis.call('HGET', KEYS[1], 'mid')
local len = nil
local max = tonumber(ARGV[4])
local i = 5
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'S' then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'mid', ARGV[i + 1], 'turn', ARGV[i + 2])
    cur = ARGV[i + 1]
    len = 0
    i = i + 3
  elseif op == 'T' then
    if cur == ARGV[i + 1] then
      if len == nil then len = redis.call('XLEN', KEYS[2]) end
      if tonumber(ARGV[i + 2]) == len and len < max then
        redis.call('XADD', KEYS[2], 'MAXLEN', max, '*', 'i', ARGV[i + 2], 't', ARGV[i + 3])
        len = len + 1
      end
    end
    i = i + 4
  elseif op == 'E' then
    if cur == ARGV[i + 1] then
      redis.call('DEL', KEYS[2])
      redis.call('HDEL', KEYS[1], 'mid', 'turn')
      cur = false
      len = nil
    end
    i = i + 2
  else
    return redis.error_reply('natter: unknown buffer op ' .. tostring(op))
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if cur then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
local payload = ARGV[2]
redis.call('PUBLISH', ARGV[1], string.sub(payload, 1, -2) .. ',"off":' .. string.format('%d', off) .. '}')
return off
"#,
    )
});

/// Reads the chat's offset, running turn and its tokens, in one step.
/// Returns `[off or nil, turn-json or nil, [[id, [field, value, …]], …]]`.
pub(crate) static READ_TURN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local st = redis.call('HMGET', KEYS[1], 'off', 'turn')
local entries = {}
if st[2] then entries = redis.call('XRANGE', KEYS[2], '-', '+') end
return {st[1], st[2], entries}
"#,
    )
});

/// Presence change of one chat: drops expired connections (of any node), then adds or
/// refreshes (`add conn user conn user …`) or removes (`rem conn …`) this node's.
/// `KEYS[1]` sorted set connection → expiry (ms, Redis's clock), `KEYS[2]` hash connection
/// → user; `ARGV[1]` the TTL in ms, `ARGV[2]` the mode. Returns `[users before, users after]`
/// (one entry per connection).
pub(crate) static PRESENCE_UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local before = redis.call('HVALS', KEYS[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, c in ipairs(expired) do redis.call('HDEL', KEYS[2], c) end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
if ARGV[2] == 'add' then
  for i = 3, #ARGV, 2 do
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
  if #ARGV >= 3 then
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
else
  for i = 3, #ARGV do
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return {before, redis.call('HVALS', KEYS[2])}
"#,
    )
});

/// The users of a chat's unexpired connections (one entry per connection); changes nothing,
/// so expiries are still reported by the next refresh.
pub(crate) static PRESENCE_ONLINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')
local out = {}
for i = 1, #live, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #live) do chunk[#chunk + 1] = live[j] end
  local users = redis.call('HMGET', KEYS[2], unpack(chunk))
  for _, u in ipairs(users) do if u then out[#out + 1] = u end end
end
return out
"#,
    )
});

/// `SET lease node NX PX ttl`, or extend it if this node already holds it. 1 if held now.
pub(crate) static LEASE_ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// Extends the lease only if this node holds it (compare-and-set on the node id).
pub(crate) static LEASE_RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// Deletes the lease only if this node holds it.
pub(crate) static LEASE_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});
