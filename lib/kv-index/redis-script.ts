/**
 * The Lua script behind the Redis backend: every index operation is one `EVALSHA` of this script,
 * so it is atomic, and a 256-block score is one round trip.
 *
 * ## Data layout (`P` is the prefix, default `kvwire:`)
 *
 * | key              | type | content                                                          |
 * | ---------------- | ---- | ---------------------------------------------------------------- |
 * | `P b:<key>`      | hash | worker -> `"<epoch>:<tierMask>:<stamp>"`, one field per holder   |
 * | `P lru`          | zset | block key (hex) scored by the logical clock of its last use      |
 * | `P clock`        | str  | logical clock: +1 per key touched (orders LRU and holders)       |
 * | `P epoch`        | hash | worker -> epoch; +1 when it clears or is removed (never reset)   |
 * | `P workers`      | set  | known workers                                                    |
 * | `P seq`          | hash | worker -> last applied event sequence number                     |
 * | `P pin`          | hash | block key -> references (any worker)                             |
 * | `P pinw`         | hash | `"<key>\|<worker>"` -> references by that worker                 |
 * | `P meta`         | hash | version, blockSize, hashSeed, maxKeys, maxWorkersPerKey          |
 *
 * A holder whose epoch is not its worker's current epoch is stale: invisible to every read, and
 * deleted when its key is next written or by `compact`. That is how `cleared` and `removeWorker`
 * take O(1) time however many blocks the worker had. The semantics (LRU order, pins, bounds,
 * sequence numbers) mirror {@link MemoryBackend} step for step; the shared tests hold them equal.
 *
 * Keys are built inside the script from the prefix. On Redis Cluster the prefix carries a hash tag
 * (`{kvwire}:`), so every key of one index hashes to one slot and the script, routed there by the
 * one key it declares (`P meta`), touches only keys of that slot.
 *
 * @packageDocumentation
 */

/** Layout version stored in `P meta`; a different version under the same prefix is refused. */
export const LAYOUT_VERSION = '1';

/** The script. ARGV[1] is the command, ARGV[2] the prefix; the rest depends on the command. */
export const INDEX_SCRIPT = String.raw`
local cmd, P = ARGV[1], ARGV[2]
local LRU, CLK, EPOCH, KNOWN, SEQ, PIN, PINW, META =
  P..'lru', P..'clock', P..'epoch', P..'workers', P..'seq', P..'pin', P..'pinw', P..'meta'

local clock0 = tonumber(redis.call('GET', CLK) or '0')
local clock = clock0
local function tick() clock = clock + 1; return clock end

local epochs = {}
local function epochOf(w)
  local e = epochs[w]
  if e == nil then e = tonumber(redis.call('HGET', EPOCH, w) or '0'); epochs[w] = e end
  return e
end
local function parse(v)
  local e, m, s = string.match(v, '^(%d+):(%d+):(%d+)$')
  return tonumber(e), tonumber(m), tonumber(s)
end
local function pinnedBy(hex, w) return redis.call('HEXISTS', PINW, hex..'|'..w) == 1 end

local evKeys, evHolders = 0, 0
-- Keys in the LRU set, read once per call and kept up to date (the script runs alone).
local size = nil
local function lruSize()
  if size == nil then size = redis.call('ZCARD', LRU) end
  return size
end

local function evictKeys(maxKeys)
  local n = lruSize()
  local scanned = 0
  while n > maxKeys and scanned < n do
    local c = redis.call('ZRANGE', LRU, 0, 0)[1]
    if redis.call('HEXISTS', PIN, c) == 1 then
      redis.call('ZADD', LRU, tick(), c)
      scanned = scanned + 1
    else
      redis.call('DEL', P..'b:'..c)
      redis.call('ZREM', LRU, c)
      n = n - 1
      evKeys = evKeys + 1
    end
  end
  size = n
end

local function addHolder(hex, w, ep, mask, stamp, maxW)
  local bk = P..'b:'..hex
  local own = redis.call('HGET', bk, w)
  local ownLive = false
  if own then
    local e, m = parse(own)
    if e == ep then mask = bit.bor(mask, m); ownLive = true end
  end
  local value = ep..':'..mask..':'..stamp
  local n = redis.call('HLEN', bk)
  -- Fast path: the live holder count cannot exceed maxW, no need to read them all.
  if ownLive or (own and n <= maxW) or ((not own) and n < maxW) then
    redis.call('HSET', bk, w, value)
    return
  end
  local all = redis.call('HGETALL', bk)
  local live = {}
  for j = 1, #all, 2 do
    local hw = all[j]
    if hw ~= w then
      local e, _, s = parse(all[j + 1])
      if e ~= epochOf(hw) then redis.call('HDEL', bk, hw) else live[#live + 1] = { hw, s } end
    end
  end
  table.sort(live, function(a, b) return a[2] < b[2] end)
  live[#live + 1] = { w, stamp }
  redis.call('HSET', bk, w, value)
  if #live > maxW then
    for j = 1, #live do
      if not pinnedBy(hex, live[j][1]) then
        redis.call('HDEL', bk, live[j][1])
        evHolders = evHolders + 1
        break
      end
    end
  end
end

local function store(w, bits, first, last, maxKeys, maxW)
  local ep = epochOf(w)
  redis.call('SADD', KNOWN, w)
  for i = last, first, -1 do
    local hex = ARGV[i]
    local stamp = tick()
    local before = lruSize()
    if redis.call('ZADD', LRU, stamp, hex) == 1 then
      size = before + 1
      redis.call('HSET', P..'b:'..hex, w, ep..':'..bits..':'..stamp)
      evictKeys(maxKeys)
    else
      addHolder(hex, w, ep, bits, stamp, maxW)
    end
  end
end

local function remove(w, bits, first, last)
  for i = first, last do
    local hex = ARGV[i]
    local bk = P..'b:'..hex
    local all = redis.call('HGETALL', bk)
    if #all > 0 then
      local left = 0
      for j = 1, #all, 2 do
        local hw = all[j]
        local e, m, s = parse(all[j + 1])
        if e ~= epochOf(hw) then
          redis.call('HDEL', bk, hw)
        elseif hw == w then
          local nm = bit.band(m, bit.bnot(bits))
          if nm == 0 then redis.call('HDEL', bk, hw) else redis.call('HSET', bk, hw, e..':'..nm..':'..s); left = left + 1 end
        else
          left = left + 1
        end
      end
      if left == 0 then redis.call('DEL', bk); redis.call('ZREM', LRU, hex); size = nil end
    end
  end
end

local function bump(w) epochs[w] = redis.call('HINCRBY', EPOCH, w, 1) end

local function apply()
  local w, seq, force = ARGV[3], ARGV[4], ARGV[5] == '1'
  local maxKeys, maxW, nOps = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  local last = redis.call('HGET', SEQ, w)
  if seq ~= '' and last then
    local s, l = tonumber(seq), tonumber(last)
    if s <= l then return { 'duplicate', last, 0, 0, redis.call('ZCARD', LRU) } end
    if s > l + 1 and not force then return { 'gap', last, 0, 0, redis.call('ZCARD', LRU) } end
  end
  if seq ~= '' then redis.call('HSET', SEQ, w, seq); last = seq end
  local i = 9
  for _ = 1, nOps do
    local op, bits, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    if op == 'stored' then store(w, bits, i + 3, i + 2 + n, maxKeys, maxW)
    elseif op == 'removed' then remove(w, bits, i + 3, i + 2 + n)
    else bump(w); redis.call('SADD', KNOWN, w) end
    i = i + 3 + n
  end
  return { 'applied', last or '', evKeys, evHolders, lruSize() }
end

local function removeWorker()
  local w = ARGV[3]
  bump(w)
  redis.call('SREM', KNOWN, w)
  redis.call('HDEL', SEQ, w)
  local pins = redis.call('HGETALL', PINW)
  local suffix = '|'..w
  for j = 1, #pins, 2 do
    local f = pins[j]
    if #f == 16 + #suffix and string.sub(f, 17) == suffix then
      local hex = string.sub(f, 1, 16)
      redis.call('HDEL', PINW, f)
      if redis.call('HINCRBY', PIN, hex, -tonumber(pins[j + 1])) <= 0 then redis.call('HDEL', PIN, hex) end
    end
  end
  return 1
end

local function acquire()
  local w = ARGV[3]
  for i = 4, #ARGV do
    redis.call('HINCRBY', PIN, ARGV[i], 1)
    redis.call('HINCRBY', PINW, ARGV[i]..'|'..w, 1)
  end
  return 1
end

local function release()
  local w = ARGV[3]
  for i = 4, #ARGV do
    local f = ARGV[i]..'|'..w
    local n = tonumber(redis.call('HGET', PINW, f) or '0')
    if n > 0 then
      if n > 1 then redis.call('HINCRBY', PINW, f, -1) else redis.call('HDEL', PINW, f) end
      if redis.call('HINCRBY', PIN, ARGV[i], -1) <= 0 then redis.call('HDEL', PIN, ARGV[i]) end
    end
  end
  return 1
end

-- ARGV: cmd, P, nFilter (-1: every worker), filter workers..., keys...
local function prefixRuns()
  local nf = tonumber(ARGV[3])
  local filter = nil
  if nf >= 0 then
    filter = {}
    for i = 4, 3 + nf do filter[ARGV[i]] = true end
  else
    nf = 0
  end
  local k0 = 4 + nf
  local nKeys = #ARGV - k0 + 1
  if nKeys <= 0 then return {} end
  local act, gpu, cpu, live = {}, {}, {}, {}
  local all = redis.call('HGETALL', P..'b:'..ARGV[k0])
  for j = 1, #all, 2 do
    local w = all[j]
    local e, m, s = parse(all[j + 1])
    if e == epochOf(w) and (filter == nil or filter[w]) then
      act[#act + 1] = { w, s }
      -- The hot loop below only checks that a value starts with "<current epoch>:".
      live[w] = e..':'
      if m == 2 then gpu[w], cpu[w] = 0, 1 else gpu[w], cpu[w] = 1, 0 end
    end
  end
  -- Same order as the in-memory backend: least recently stored first.
  table.sort(act, function(a, b) return a[2] < b[2] end)
  for j = 1, #act do act[j] = act[j][1] end
  local out = {}
  local matched = 0
  if #act > 0 then matched = 1 end
  local nact = #act
  local i = 1
  while i < nKeys and nact > 0 do
    local vals = redis.call('HMGET', P..'b:'..ARGV[k0 + i], unpack(act, 1, nact))
    local n = 0
    for a = 1, nact do
      local w, v = act[a], vals[a]
      local pre = live[w]
      if v and string.find(v, pre, 1, true) == 1 then
        n = n + 1
        act[n] = w
        if string.byte(v, #pre + 1) == 50 then cpu[w] = cpu[w] + 1 else gpu[w] = gpu[w] + 1 end
      else
        out[#out + 1] = w; out[#out + 1] = gpu[w]; out[#out + 1] = cpu[w]
      end
    end
    nact = n
    i = i + 1
    if nact > 0 then matched = i end
  end
  for a = 1, nact do
    local w = act[a]
    out[#out + 1] = w; out[#out + 1] = gpu[w]; out[#out + 1] = cpu[w]
  end
  -- Touch the matched keys, first block last (newest), a few hundred per ZADD.
  local batch = {}
  for j = matched, 1, -1 do
    batch[#batch + 1] = tick()
    batch[#batch + 1] = ARGV[k0 + j - 1]
    if #batch >= 512 or j == 1 then redis.call('ZADD', LRU, unpack(batch)); batch = {} end
  end
  return out
end

local function holders()
  local all = redis.call('HGETALL', P..'b:'..ARGV[3])
  local live = {}
  for j = 1, #all, 2 do
    local e, m, s = parse(all[j + 1])
    if e == epochOf(all[j]) then live[#live + 1] = { all[j], m, s } end
  end
  table.sort(live, function(a, b) return a[3] < b[3] end)
  local out = {}
  for j = 1, #live do out[#out + 1] = live[j][1]; out[#out + 1] = live[j][2] end
  return out
end

local function stats()
  return { redis.call('ZCARD', LRU), redis.call('SCARD', KNOWN), redis.call('HLEN', PIN) }
end

-- ARGV: cmd, P, start rank, count. Returns { keys deleted, next start rank, done (0/1) }.
local function compact()
  local start, count = tonumber(ARGV[3]), tonumber(ARGV[4])
  local hexes = redis.call('ZRANGE', LRU, start, start + count - 1)
  local deleted = 0
  for _, hex in ipairs(hexes) do
    local bk = P..'b:'..hex
    local all = redis.call('HGETALL', bk)
    local left = 0
    for j = 1, #all, 2 do
      local e = parse(all[j + 1])
      if e ~= epochOf(all[j]) then redis.call('HDEL', bk, all[j]) else left = left + 1 end
    end
    if left == 0 then redis.call('DEL', bk); redis.call('ZREM', LRU, hex); deleted = deleted + 1 end
  end
  local done = 0
  if #hexes < count then done = 1 end
  return { deleted, start + #hexes - deleted, done }
end

-- ARGV: cmd, P, then field/value pairs the index was created with.
local function init()
  local have = redis.call('HGETALL', META)
  if #have == 0 then
    for i = 3, #ARGV, 2 do redis.call('HSET', META, ARGV[i], ARGV[i + 1]) end
    return {}
  end
  local m = {}
  for j = 1, #have, 2 do m[have[j]] = have[j + 1] end
  for i = 3, #ARGV, 2 do
    if m[ARGV[i]] ~= ARGV[i + 1] then return { ARGV[i], m[ARGV[i]] or '', ARGV[i + 1] } end
  end
  return {}
end

local handlers = {
  apply = apply, removeWorker = removeWorker, acquire = acquire, release = release,
  prefixRuns = prefixRuns, holders = holders, stats = stats, compact = compact, init = init,
}
local h = handlers[cmd]
if h == nil then return redis.error_reply('kvwire index script: unknown command '..tostring(cmd)) end
local result = h()
if clock ~= clock0 then redis.call('SET', CLK, clock) end
return result
`;
