-- complete.lua: finish one job: ack it, delete it, and answer it exactly once.
-- With at-least-once delivery a job can be computed twice (reclaimed from a slow worker). Only the
-- worker whose XACK removes the entry from the pending list writes and publishes the result.
--
-- KEYS[1]  the job stream
-- KEYS[2]  the job's result key (redisKeys().result(id))
-- ARGV[1]  consumer group
-- ARGV[2]  stream entry id
-- ARGV[3]  result JSON (protocol.ts JobResult)
-- ARGV[4]  result TTL in milliseconds
-- ARGV[5]  reply channel to publish the result on
--
-- Returns 1 if this call answered the job, 0 if another worker already had.
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 1 then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  redis.call('PUBLISH', ARGV[5], ARGV[3])
end
return acked
