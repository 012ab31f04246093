-- wrk script for bench/inbound.py: each thread sends its share of a file of pre-signed
-- webhooks (`body<TAB>signature` lines) in order; done() prints JSON figures and how many
-- lines each thread issued, so the run can check every answered message was stored.
local counter = 1
local threads = {}

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  local path, threads = args[1], tonumber(args[2])
  lines, idx = {}, 0
  local n = 0
  for line in io.lines(path) do
    if n % threads == id - 1 then
      table.insert(lines, line)
    end
    n = n + 1
  end
end

function request()
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
  local issued = {}
  for i, thread in ipairs(threads) do
    issued[i] = tostring(thread:get("idx"))
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "status_errors": %d, "p50_us": %d, "p99_us": %d, "issued": [%s]}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99), table.concat(issued, ", ")))
end
