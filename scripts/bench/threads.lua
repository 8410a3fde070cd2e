-- Shared by the write-path scripts: wrk runs one connection per thread there (-t N -c N),
-- and each thread learns its number 1..N as `id`, so it can own its own account or chain.
local count = 0
function setup(thread)
  count = count + 1
  thread:set("id", count)
end
