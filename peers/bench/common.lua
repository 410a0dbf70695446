-- Shared by the `cargo xtask bench --peer` scenarios (crates/latch-server/benches/peer.rs runs
-- wrk with one of refresh.lua, client_credentials.lua, gtr.lua, which load this file first).
--
-- Environment: BENCH_EXPECT, the status every answer must have (200 unless set).
-- Per thread: `id` (0-based, set in setup), `used` (requests sent), `bad` (answers without the
-- expected status), `dry` (requests asked for after the thread's prepared input ran out: the
-- thread then stops and the round is invalid), `failures` (the first few failed answers).
-- done() prints one line, `BENCH {json}`, and one `FAILURE <status> <body>` line per kept answer.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

id, used, bad, dry, shown, failures = 0, 0, 0, 0, 0, ""
expect = tonumber(os.getenv("BENCH_EXPECT") or "200")

-- The non-empty lines of `path`.
function lines_of(path)
  local t = {}
  for l in io.lines(path) do
    if l ~= "" then t[#t + 1] = l end
  end
  return t
end

function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Counts an answer without the expected status (after the input ran dry answers are not
-- counted: the round is invalid anyway), keeping the first three.
function failed(status, body)
  if dry > 0 then return end
  bad = bad + 1
  if shown < 3 then
    shown = shown + 1
    failures = failures .. "FAILURE " .. status .. " " .. (body or ""):sub(1, 400):gsub("[\r\n]", " ") .. "\n"
  end
end

-- The prepared input is used up: stop this thread (the request returned is never counted).
function ran_dry()
  dry = dry + 1
  wrk.thread:stop()
  return wrk.format("GET", "/")
end

function done(summary, latency, requests)
  local t = { used = 0, bad = 0, dry = 0 }
  local shown_all = ""
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (thread:get(k) or 0) end
    shown_all = shown_all .. (thread:get("failures") or "")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"bad":%d,"dry":%d,"used":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    t.bad, t.dry, t.used, latency:percentile(50), latency:percentile(99), latency.max))
  io.write(shown_all)
end
