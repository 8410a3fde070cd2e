-- Every request registers a new email.
-- Args: PASSWORD
dofile(os.getenv("BENCH_LUA") .. "/threads.lua")

function init(args)
  password, n = args[1], 0
end

function request()
  n = n + 1
  return wrk.format("POST", "/api/v1/auth/register", {["Content-Type"] = "application/json"},
    '{"email":"new-' .. id .. '-' .. n .. '@example.com","password":"' .. password .. '"}')
end
