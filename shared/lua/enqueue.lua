-- enqueue.lua: add one job to the stream unless the backlog is at its limit.
-- The stream never gets trimmed: a full queue is refused here, so the edge answers 503 and
-- nothing already accepted is dropped. Workers XDEL finished entries, so XLEN is the backlog
-- (waiting + in flight).
--
-- KEYS[1]  the job stream (redisKeys().stream)
-- ARGV[1]  max backlog (integer)
-- ARGV[2.] the job's field/value pairs (protocol.ts JOB_FIELDS)
--
-- Returns the new entry id, or false (nil to the client) when the queue is full.
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
