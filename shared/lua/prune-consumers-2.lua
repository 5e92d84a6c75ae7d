-- prune-consumers-2.lua: remove the group's consumers that are gone: nothing pending, idle for
-- longer than ARGV[2], and no heartbeat. Workers are named <host>-<pid> by default, so each
-- restart or redeploy adds a consumer; without this the group's consumer list only grows.
-- Atomic, so no consumer takes a job between the check and its removal. A live consumer removed
-- anyway (quiet for that long, its heartbeat entry lost) loses nothing: its next XREADGROUP
-- creates it again.
--
-- KEYS[1]  the job stream
-- KEYS[2]  the workers' heartbeat hash (redisKeys().workers), field = consumer name
-- ARGV[1]  consumer group
-- ARGV[2]  minimum idle time, milliseconds
--
-- Returns the names of the consumers removed.
local removed = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) and redis.call('HEXISTS', KEYS[2], info['name']) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    table.insert(removed, info['name'])
  end
end
return removed
