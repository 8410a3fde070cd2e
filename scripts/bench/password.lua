-- Each connection changes its own account's password back and forth between two.
-- Args: TOKENS (a file, thread `id`'s access token on line `id`) PASSWORD OTHER
dofile(os.getenv("BENCH_LUA") .. "/threads.lua")

function init(args)
  local n = 0
  for line in io.lines(args[1]) do
    n = n + 1
    if n == id then token = line end
  end
  current, other = args[2], args[3]
end

function request()
  return wrk.format("PUT", "/api/v1/auth/me/password",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token},
    '{"current_password":"' .. current .. '","new_password":"' .. other .. '"}')
end

function response(status)
  if status == 204 then current, other = other, current end
end
