-- wrk script for bench/inbound.py: each thread sends its share of a file of pre-signed
-- webhooks (`body<TAB>signature` lines) in order; done() prints JSON figures and how many
-- lines each thread issued, so the run can check every answered message was stored.
--
-- With a third argument, `once` (bench/memory.py), each line is sent exactly once and the
-- file, not the clock, bounds the run: a thread that has sent its lines polls GET /healthz
-- and prints "thread N done" when its last answer is in; the caller then interrupts wrk
-- (SIGINT), which would otherwise wait out its -d. (A thread that stopped on its own would
-- leave connections open and unwritten, each holding a sync worker until wrk exits.)
local counter = 1
local threads = {}

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local function answer(status, headers, body)
  if headers["Content-Type"] == "application/json" then
    return -- a /healthz poll
  end
  answered = answered + 1
  if answered == #lines then
    io.write(string.format("thread %d done\n", id))
    io.flush()
  end
end

function init(args)
  local path, threads = args[1], tonumber(args[2])
  lines, idx, answered = {}, 0, 0
  local n = 0
  for line in io.lines(path) do
    if n % threads == id - 1 then
      table.insert(lines, line)
    end
    n = n + 1
  end
  once = args[3] == "once"
  if once then
    health = wrk.format("GET", "/healthz")
    -- wrk calls the first thread's request() once before the run, to check the script;
    -- that request is never sent, so it must not use up a line.
    checking = id == 1
    response = answer
  end
end

function request()
  if once and (checking or idx >= #lines) then
    checking = false
    return health
  end
  idx = idx + 1
  local line = lines[(idx - 1) % #lines + 1]
  local tab = line:find("\t", 1, true)
  return wrk.format("POST", "/sms", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = line:sub(tab + 1),
  }, line:sub(1, tab - 1))
end

function done(summary, latency, requests)
  local e = summary.errors
  local issued, answers = {}, {}
  for i, thread in ipairs(threads) do
    issued[i] = tostring(thread:get("idx"))
    answers[i] = tostring(thread:get("answered"))
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "status_errors": %d, "p50_us": %d, "p99_us": %d, "issued": [%s], "answers": [%s]}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99), table.concat(issued, ", "),
    table.concat(answers, ", ")))
end
