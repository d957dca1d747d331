-- wrk script for bench/http.py: POST /graphql with one JSON body per request.
-- wrk -s graphql.lua URL -- TOKENS BODIES THREADS TOKEN_MODE BODY_MODE SEED
--   TOKENS: a file of bearer tokens, one a line ("-" for none: anonymous / X-Shop-Key in the body file's header)
--   TOKEN_MODE: each   = every request takes the next unused token of this thread's share (one customer per join)
--               reuse  = every request uses the first token
--   BODY_MODE:  random = a random body of the file; seq = the next body of this thread's share; hot = all
--               requests target the current body until it answers GROUP_FULL, then move to the next
--   extra header lines in the body file start with "#H " (e.g. "#H X-Shop-Key: pk_...").
-- done() prints one JSON line: requests, latency percentiles (microseconds) and answer classes.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function share(path, n, t, keep_all)
  local out, i = {}, 0
  for line in io.lines(path) do
    if keep_all or i % n == t then table.insert(out, line) end
    i = i + 1
  end
  return out
end

function init(args)
  local tokens_path, bodies_path, n = args[1], args[2], tonumber(args[3])
  token_mode, body_mode = args[4], args[5]
  math.randomseed(tonumber(args[6] or "1") + 7919 * tid)  -- else every thread and run draws the same groups
  tokens = {}
  if tokens_path ~= "-" then tokens = share(tokens_path, n, tid, token_mode == "reuse") end
  local all = share(bodies_path, 1, 0, true)
  headers = {["Content-Type"] = "application/json"}
  bodies = {}
  for _, line in ipairs(all) do
    local k, v = line:match("^#H ([^:]+): (.*)$")
    if k then headers[k] = v else table.insert(bodies, line) end
  end
  if body_mode == "seq" then  -- this thread's share of the bodies
    local mine = {}
    for i, b in ipairs(bodies) do if (i - 1) % n == tid then table.insert(mine, b) end end
    bodies = mine
  end
  hot = 1
  ok, refused, full, other, exhausted = 0, 0, 0, 0, 0
  codes = ""
end

function request()
  counter = counter + 1
  if #tokens > 0 then
    local tok
    if token_mode == "each" then
      tok = tokens[counter]
      if tok == nil then exhausted = exhausted + 1; tok = tokens[(counter % #tokens) + 1] end
    else
      tok = tokens[1]
    end
    headers["Authorization"] = "Bearer " .. tok
  end
  local body
  if body_mode == "random" then body = bodies[math.random(#bodies)]
  elseif body_mode == "seq" then
    body = bodies[counter]
    if body == nil then exhausted = exhausted + 1; body = bodies[(counter % #bodies) + 1] end
  else body = bodies[math.min(hot, #bodies)] end
  return wrk.format("POST", "/graphql", headers, body)
end

function response(status, hdrs, body)
  if status ~= 200 then other = other + 1; return end
  if body:find('"errors":%s*%[%]') or not body:find('"errors"') then ok = ok + 1; return end
  if body:find("GROUP_FULL", 1, true) then
    full = full + 1
    if body_mode == "hot" then hot = hot + 1 end
    return
  end
  refused = refused + 1
  if #codes < 200 then
    local c = body:match('"code":%s*"([A-Z_]+)"')
    if c and not codes:find(c, 1, true) then codes = codes .. c .. " " end
  end
end

function done(summary, latency, requests)
  local t = {ok = 0, refused = 0, full = 0, other = 0, exhausted = 0}
  local seen = ""
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
    seen = seen .. (th:get("codes") or "")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "ok": %d, "refused": %d, "full": %d, ' ..
    '"http_errors": %d, "exhausted": %d, "socket_errors": %d, "codes": "%s"}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), t.ok, t.refused, t.full,
    t.other, t.exhausted, e.connect + e.read + e.write + e.timeout, seen))
end
