-- One audit batch in one command: XADD each entry to the capped stream KEYS[1].
-- ARGV: maxlen, field count n, the n field names, then n values per entry.
local maxlen, n = ARGV[1], tonumber(ARGV[2])
local fields = {}
for i = 1, n do fields[i] = ARGV[2 + i] end
local pairs_ = {}
for first = 3 + n, #ARGV, n do
  for i = 1, n do
    pairs_[2 * i - 1] = fields[i]
    pairs_[2 * i] = ARGV[first + i - 1]
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(pairs_))
end
