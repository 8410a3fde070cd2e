-- Each connection rotates its own session: it presents the refresh token the previous
-- response gave it. A refused rotation leaves the old token, whose reuse then ends the
-- chain, so every later request shows up as non-2xx.
-- Args: PREFIX (thread `id` starts with the seeded token PREFIX..id)
dofile(os.getenv("BENCH_LUA") .. "/threads.lua")

function init(args)
  token = args[1] .. id
end

function request()
  return wrk.format("POST", "/api/v1/auth/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  if status == 200 then
    token = body:match('"refresh_token"%s*:%s*"([^"]+)"') or token
  end
end
