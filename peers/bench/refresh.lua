-- The refresh grant. BENCH_INPUT.<thread id>: this thread's refresh tokens, one a line;
-- BENCH_PATH: the token endpoint's path; BENCH_FORM: the form up to the token's value
-- (`grant_type=refresh_token&client_id=...&client_secret=...&refresh_token=`).
-- Each thread keeps a queue: a request takes the token at its head, an answer puts the
-- `refresh_token` it carries at its tail (Latch's rotated one; oidc-provider answers the same
-- one, it does not rotate). wrk asks a connection for its next request only after the previous
-- answer, so with more tokens than connections per thread the queue never runs dry; a failed
-- answer loses its token (and fails the round).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local queue, head, tail = {}, 1, 0
local path, form
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }

function init(args)
  for _, t in ipairs(lines_of(os.getenv("BENCH_INPUT") .. "." .. id)) do
    tail = tail + 1
    queue[tail] = t
  end
  path, form = os.getenv("BENCH_PATH"), os.getenv("BENCH_FORM")
end

function request()
  if head > tail then return ran_dry() end
  local t = queue[head]
  queue[head] = nil
  head = head + 1
  used = used + 1
  return wrk.format("POST", path, headers, form .. urlencode(t))
end

function response(status, _, body)
  if status ~= expect then return failed(status, body) end
  local t = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if not t then return failed(status, "no refresh_token: " .. body) end
  tail = tail + 1
  queue[tail] = t
end
