-- Sign-ins spread over many accounts: thread `id` walks the list from its own place.
-- Args: ACCOUNTS (a file, an email a line) PASSWORD
dofile(os.getenv("BENCH_LUA") .. "/threads.lua")

function init(args)
  accounts = {}
  for line in io.lines(args[1]) do accounts[#accounts + 1] = line end
  password = args[2]
  turn = id * 7
end

function request()
  turn = turn + 1
  local email = accounts[turn % #accounts + 1]
  return wrk.format("POST", "/api/v1/auth/login", {["Content-Type"] = "application/json"},
    '{"email":"' .. email .. '","password":"' .. password .. '"}')
end
