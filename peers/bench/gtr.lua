-- Global Token Revocation, each request prepared ahead and sent once. BENCH_INPUT.<thread id>:
-- this thread's requests, one a line: `path<TAB>bearer token<TAB>JSON body`. When they run
-- out the thread stops and the round is invalid (the bench sizes the input so they do not).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local lines, next_line = {}, 1

-- LATCH_BENCH_DELAY_MS: a pause before each request of a connection (not counted in its
-- latency), to measure at a rate below saturation.
local pause = tonumber(os.getenv("LATCH_BENCH_DELAY_MS") or "") or 0
if pause > 0 then
  function delay() return pause end
end

function init(args)
  lines = lines_of(os.getenv("BENCH_INPUT") .. "." .. id)
end

function request()
  local l = lines[next_line]
  if not l then return ran_dry() end
  lines[next_line] = nil
  next_line = next_line + 1
  used = used + 1
  local path, token, body = l:match("^([^\t]*)\t([^\t]*)\t(.*)$")
  return wrk.format("POST", path,
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }, body)
end

function response(status, _, body)
  if status ~= expect then failed(status, body) end
end
