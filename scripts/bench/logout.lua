-- Each request ends another seeded session: thread `id` of N takes the tokens
-- PREFIX..(id - 1 + k N) for k = 0, 1, 2, …, which all belong to its own account.
-- Args: PREFIX N
dofile(os.getenv("BENCH_LUA") .. "/threads.lua")

function init(args)
  prefix, threads, k = args[1], tonumber(args[2]), 0
end

function request()
  local token = prefix .. (id - 1 + k * threads)
  k = k + 1
  return wrk.format("POST", "/api/v1/auth/logout", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end
