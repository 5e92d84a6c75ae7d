-- deadletter-3.lua: give up on one job: copy it to the dead-letter stream, answer it with an error,
-- ack and delete it, exactly once. For a job that keeps failing: delivered more than
-- MAX_DELIVERIES times (each delivery ended with its worker gone before an answer: a crash, a
-- kill, out of memory), or whose inference throws when it runs on its own.
-- Only the call whose XACK removes the entry from the pending list copies it,
-- writes the result and publishes it; a repeat (a retried write, a second worker) only deletes.
--
-- KEYS[1]  the job stream
-- KEYS[2]  the dead-letter stream (redisKeys().deadLetter)
-- KEYS[3]  the job's result key (redisKeys().result(id))
-- ARGV[1]  consumer group
-- ARGV[2]  stream entry id
-- ARGV[3]  result JSON (protocol.ts JobResult, ok = false)
-- ARGV[4]  result TTL in milliseconds
-- ARGV[5]  reply channel to publish the result on
-- ARGV[6]  most entries the dead-letter stream keeps (exact MAXLEN: the oldest go first)
-- ARGV[7.] field/value pairs recorded with the dead letter (reason, deliveries, consumer, ...)
--
-- A dead letter's fields: `entry` (the job's stream entry id), the ARGV[7.] pairs, then the job's
-- own fields (id, enc, tensor, enqueuedAt, deadline, reply) if the entry still existed.
--
-- Returns 1 if this call dead-lettered and answered the job, 0 if it had already been answered.
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
  local record = { 'entry', ARGV[2] }
  for i = 7, #ARGV do
    record[#record + 1] = ARGV[i]
  end
  local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
  if found[1] then
    for _, value in ipairs(found[1][2]) do
      record[#record + 1] = value
    end
  end
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[6], '*', unpack(record))
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4], 'NX') -- first answer wins, as in protocol.ts completionCommands
  redis.call('PUBLISH', ARGV[5], ARGV[3])
end
redis.call('XDEL', KEYS[1], ARGV[2])
return acked
