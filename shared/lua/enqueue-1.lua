-- enqueue-1.lua: add one job to the stream unless the backlog is at its limit.
-- The stream never gets trimmed: a full queue is refused here, so the edge answers 503 and
-- nothing already accepted is dropped. Workers XDEL finished entries, so XLEN is the backlog
-- (waiting + in flight). The limit is QUEUE_MAX, or less when the workers' throughput says a job
-- enqueued behind this backlog could not be answered before its deadline (edge/broker/admission.ts).
--
-- KEYS[1]  the job stream (redisKeys().stream)
-- ARGV[1]  max backlog (integer)
-- ARGV[2.] the job's field/value pairs (protocol.ts JOB_FIELDS)
--
-- Returns the new entry id (a string), or the backlog (an integer) when it is at the limit.
local backlog = redis.call('XLEN', KEYS[1])
if backlog >= tonumber(ARGV[1]) then
  return backlog
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
