-- complete-n.lua: answer a batch of jobs, and drop the entries nobody waits for, in one call (one
-- command billed per batch, where a pipeline of the same commands bills each). `n`: the number
-- of keys varies with the batch, so the caller passes it.
--
-- Per answered job, in this order: SET NX of its result key (the first answer wins the key, which
-- the edges' fallback paths read), PUBLISH on its reply channel (pushes it to the waiting edge),
-- XACK (its reply says whether this call was the first to finish the job), XDEL (the stream's
-- length stays the backlog: enqueue-1.lua's bound). The script runs whole, and a repeat (a
-- retried write, a second worker that reclaimed the job) stores nothing new: it publishes again
-- (an edge keeps the first message it gets for a job), acks 0 and deletes nothing. Per dropped
-- entry (expired, unanswerable): XACK and XDEL, no result.
--
-- KEYS[1]   the job stream
-- KEYS[2.]  the result key of each answered job (redisKeys().result(id)), in ARGV's order
-- ARGV[1]   consumer group
-- ARGV[2]   result TTL in milliseconds
-- ARGV[3.]  per answered job (#KEYS - 1 of them): its stream entry id, reply channel, result JSON;
--           then the stream entry ids to drop
--
-- Returns XACK's reply per answered job, then per dropped entry: 1 if this call acked it, 0 if it
-- was acked before.
local stream, group, ttl = KEYS[1], ARGV[1], ARGV[2]
local acks = {}
local answered = #KEYS - 1
for i = 1, answered do
  local at = 3 + (i - 1) * 3
  local entry, json = ARGV[at], ARGV[at + 2]
  -- pcall: a SET refused (out of memory with noeviction) must not cost the batch its pushes and acks.
  redis.pcall('SET', KEYS[i + 1], json, 'PX', ttl, 'NX')
  redis.call('PUBLISH', ARGV[at + 1], json)
  acks[#acks + 1] = redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end
for at = 3 + answered * 3, #ARGV do
  acks[#acks + 1] = redis.call('XACK', stream, group, ARGV[at])
  redis.call('XDEL', stream, ARGV[at])
end
return acks
