-- The client_credentials grant: every request the same. BENCH_PATH: the token endpoint's
-- path; BENCH_FORM: the whole form (grant_type, client_id, client_secret, and `resource` for
-- oidc-provider or `audience` for Latch, scope).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local req

function init(args)
  req = wrk.format("POST", os.getenv("BENCH_PATH"),
    { ["Content-Type"] = "application/x-www-form-urlencoded" }, os.getenv("BENCH_FORM"))
end

function request()
  used = used + 1
  return req
end

function response(status, _, body)
  if status ~= expect then failed(status, body) end
end
