-- spec/12-http1_spec.lua: the sans-I/O HTTP/1.1 response framer (partner._http1) that the
-- cosocket driver uses: RFC 9112 framing, limits and errors, each input fed whole, with empty
-- pieces, split at every point and byte by byte, every way giving the same result.
local partner = require "yeastar.partner"

local NOW = 784111777 -- Sun, 06 Nov 1994 08:49:37 GMT
local MAX = 1024      -- max_body unless a case says otherwise

-- Feeds the pieces in order, all of them (also after "done": a socket delivers what the peer
-- sent), then eof when the peer closes. Returns what the driver would see.
local function run(pieces, max_body, eof)
  local p = partner._http1(max_body)
  local state, used = "more", 0
  for _, piece in ipairs(pieces) do
    local st, n, detail = p:feed(piece)
    if st == nil then return { error = n, detail = detail } end
    state, used = st, used + n
  end
  if eof then
    local st, code, detail = p:eof()
    if st == nil then return { error = code, detail = detail } end
    state = st
  end
  if state ~= "done" then return { state = state, used = used } end
  local r = p:response(NOW)
  return { state = state, used = used, status = r.status, body = r.body,
           keep_alive = r.keep_alive, retry_after = r.retry_after }
end

-- The ways the same bytes can arrive: whole, with empty pieces around, in two pieces at every
-- point (past 600 bytes at a sample of points, always including the last few), byte by byte.
local function arrivals(input)
  local n, out = #input, { { input }, { "", input, "" } }
  local step = n <= 600 and 1 or math.floor(n / 150)
  local points = {}
  for i = 1, n - 1, step do points[#points + 1] = i end
  for i = n - 3, n - 1 do if i >= 1 then points[#points + 1] = i end end
  for _, i in ipairs(points) do out[#out + 1] = { input:sub(1, i), input:sub(i + 1) } end
  local bytes = {}
  for i = 1, n do bytes[i] = input:sub(i, i) end
  out[#out + 1] = bytes
  return out
end

local function describe_pieces(pieces)
  local sizes = {}
  for i, s in ipairs(pieces) do
    if i > 8 then sizes[#sizes + 1] = "..." break end
    sizes[#sizes + 1] = #s
  end
  return #pieces .. " pieces (" .. table.concat(sizes, ", ") .. ")"
end

-- Every arrival gives the same result as the whole input; returns that result.
local function parse(input, max_body, eof)
  max_body = max_body or MAX
  local ways = arrivals(input)
  local first = run(ways[1], max_body, eof)
  for i = 2, #ways do
    local got = run(ways[i], max_body, eof)
    assert.same(first, got, "fed as " .. describe_pieces(ways[i]))
  end
  return first
end

-- What a case expects: { error = code, detail = text }, { more = true }, or a response with
-- used (default: all of the input) and body (default "").
local function expected(input, want)
  if want.error then return { error = want.error, detail = want.detail } end
  if want.more then return { state = "more", used = #input } end
  return { state = "done", used = want.used or #input, status = want.status, body = want.body or "",
           keep_alive = want.keep_alive, retry_after = want.retry_after }
end

-- Runs a list of cases { name, input, want, max_body =, eof = } as one `it` each.
local function cases(list)
  for _, c in ipairs(list) do
    it(c[1], function()
      assert.same(expected(c[2], c[3]), parse(c[2], c.max_body, c.eof))
    end)
  end
end

local function ok(status, body, keep_alive, extra)
  local t = { status = status, body = body, keep_alive = keep_alive }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end
local function protocol(detail) return { error = "protocol", detail = detail } end
local function lost(detail) return { error = "lost", detail = detail } end
local function too_large(detail) return { error = "too_large", detail = detail } end

local NO_STATUS = protocol("no HTTP/1.x status line")
local HEADERS_TOO_LARGE = protocol("headers too large (over 65536 bytes)")
local CHUNKED = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

-- A head of exactly `size` bytes (status line, one padding field, Content-Length: 0, empty line).
local function head_of_size(size)
  local fixed = "HTTP/1.1 200 OK\r\n" .. "X-Pad: " .. "\r\n" .. "Content-Length: 0\r\n" .. "\r\n"
  return "HTTP/1.1 200 OK\r\nX-Pad: " .. ("p"):rep(size - #fixed) .. "\r\nContent-Length: 0\r\n\r\n"
end

local function fields(n, prefix)
  local t = {}
  for i = 1, n do t[i] = (prefix or "X-Field-") .. i .. ": v\r\n" end
  return table.concat(t)
end

describe("http1 framer", function()
  describe("status line", function()
    cases {
      { "HTTP/1.1 200 OK with a Content-Length body",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", ok(200, "hello", true) },
      { "HTTP/1.0: closes unless keep-alive is asked for",
        "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", ok(200, "hello", false) },
      { "no reason phrase, no space", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", ok(200, "", true) },
      { "no reason phrase, with the space", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
        ok(404, "", true) },
      { "a reason phrase with tabs and obs-text",
        "HTTP/1.1 503 Service\tUn available \200\255\r\nContent-Length: 0\r\n\r\n", ok(503, "", true) },
      { "an unregistered code up to 999", "HTTP/1.1 999 Custom\r\nContent-Length: 0\r\n\r\n",
        ok(999, "", true) },
      { "HTTP/1.2 reads as HTTP/1.1 (RFC 9112 2.5)", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", true) },
      { "HTTP/0.9: a body without a status line", '{"code":"success"}', NO_STATUS },
      { "HTTP/2", "HTTP/2 200\r\n\r\n", NO_STATUS },
      { "HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", NO_STATUS },
      { "HTTP/1.10", "HTTP/1.10 200 OK\r\n\r\n", NO_STATUS },
      { "lower-case version", "http/1.1 200 OK\r\n\r\n", NO_STATUS },
      { "garbage", "\000\001\002\003 hello", NO_STATUS },
      { "a leading empty line", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", NO_STATUS },
      { "two digits", "HTTP/1.1 20 OK\r\n\r\n", NO_STATUS },
      { "four digits", "HTTP/1.1 2000 OK\r\n\r\n", NO_STATUS },
      { "a code below 100", "HTTP/1.1 099 Low\r\n\r\n", NO_STATUS },
      { "words for digits", "HTTP/1.1 two hundred OK\r\nContent-Length: 2\r\n\r\n{}", NO_STATUS },
      { "two spaces before the code", "HTTP/1.1  200 OK\r\n\r\n", NO_STATUS },
      { "a status line only, cut short", "HTTP/1.1 200\r\n", { more = true } },
      { "a NUL in the reason phrase", "HTTP/1.1 200 O\000K\r\n\r\n",
        protocol("control character in the reason phrase") },
      { "a bare CR in the status line", "HTTP/1.1 200 O\rK\r\n\r\n", protocol("bare CR in the headers") },
    }
  end)

  describe("interim responses", function()
    cases {
      { "100 Continue, then the final response",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ok(200, "ok", true) },
      { "103 Early Hints with fields, then the final response",
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n"
          .. "Link: </a.js>; rel=preload\r\n\r\n"
          .. "HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew", ok(201, "new", true) },
      { "several interim responses", ("HTTP/1.1 100 Continue\r\n\r\n"):rep(3)
          .. "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", ok(204, "", true) },
      { "an interim Content-Length frames nothing",
        "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"
          .. "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ok(200, "ok", true) },
      { "an interim Connection: close does not carry over",
        "HTTP/1.1 100 Continue\r\nConnection: close\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", true) },
      { "101 Switching Protocols was never asked for",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        protocol("101 Switching Protocols, not requested") },
      { "the connection closes after an interim response", "HTTP/1.1 100 Continue\r\n\r\n",
        lost("connection closed in the headers"), eof = true },
      { "endless interim responses share the 64 KiB head budget",
        ("HTTP/1.1 100 Continue\r\n\r\n"):rep(3000), HEADERS_TOO_LARGE },
      { "50,000 bytes of interim responses, then the final one",
        ("HTTP/1.1 100 Continue\r\n\r\n"):rep(2000) .. "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", true) },
    }
  end)

  describe("fields", function()
    cases {
      { "every tchar in a name, any value",
        "HTTP/1.1 200 OK\r\nX-Ok!#$%&'*+-.^_`|~09: a \"quoted\" value\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", true) },
      { "an empty value", "HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n", ok(200, "", true) },
      { "names are case-insensitive", "HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: 2\r\n\r\nok",
        ok(200, "ok", true) },
      { "other control characters and obs-text in a value are kept (RFC 9110 5.5)",
        "HTTP/1.1 200 OK\r\nX-Odd: a\001b\127c\255\r\nContent-Length: 0\r\n\r\n", ok(200, "", true) },
      { "a space in a name", "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", protocol("malformed field line") },
      { "a space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
        protocol("malformed field line") },
      { "no colon", "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", protocol("malformed field line") },
      { "an empty name", "HTTP/1.1 200 OK\r\n: x\r\n\r\n", protocol("malformed field line") },
      { "a non-token byte in a name", "HTTP/1.1 200 OK\r\nX(y): x\r\n\r\n",
        protocol("malformed field line") },
      { "a NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\000b\r\n\r\n", protocol("NUL in a field value") },
      { "a bare CR in a value", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n",
        protocol("bare CR in the headers") },
      { "a bare CR ending a line", "HTTP/1.1 200 OK\r\nX-A: a\r\rContent-Length: 0\r\n\r\n",
        protocol("bare CR in the headers") },
      { "obs-fold with a space", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        protocol("folded or indented field line") },
      { "obs-fold with a tab", "HTTP/1.1 200 OK\r\nX-A: a\r\n\tb\r\nContent-Length: 0\r\n\r\n",
        protocol("folded or indented field line") },
      { "whitespace before the first field", "HTTP/1.1 200 OK\r\n X-A: a\r\nContent-Length: 0\r\n\r\n",
        protocol("folded or indented field line") },
      { "100 fields", "HTTP/1.1 200 OK\r\n" .. fields(99) .. "Content-Length: 0\r\n\r\n",
        ok(200, "", true) },
      { "101 fields", "HTTP/1.1 200 OK\r\n" .. fields(100) .. "Content-Length: 0\r\n\r\n",
        protocol("headers too large (over 100 fields)") },
      { "a head of exactly 64 KiB", head_of_size(65536), ok(200, "", true) },
      { "a head of exactly 64 KiB, then the body",
        head_of_size(65536):gsub("Content%-Length: 0", "Content-Length: 5") .. "hello",
        ok(200, "hello", true) },
      { "a head of 64 KiB and one byte", head_of_size(65537), HEADERS_TOO_LARGE },
      { "a 100 KB field line, refused before its end",
        "HTTP/1.1 200 OK\r\nX-Big: " .. ("a"):rep(100000), HEADERS_TOO_LARGE },
      { "a 100 KB status line", "HTTP/1.1 200 " .. ("a"):rep(100000) .. "\r\n\r\n", HEADERS_TOO_LARGE },
    }
  end)

  describe("bare LF line endings (RFC 9112 2.2 MAY, accepted everywhere lines are read)", function()
    cases {
      { "all bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", ok(200, "ok", true) },
      { "mixed with CRLF", "HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok", ok(200, "ok", true) },
      { "in a chunked body and its trailers",
        "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\nhello\n0\nX-T: 1\n\n",
        ok(200, "hello", true) },
    }
  end)

  describe("Content-Length", function()
    cases {
      { "duplicate field lines that agree",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", ok(200, "ok", true) },
      { "a list of equal values", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2 ,2\r\n\r\nok",
        ok(200, "ok", true) },
      { "leading zeros", "HTTP/1.1 200 OK\r\nContent-Length: 0002\r\n\r\nok", ok(200, "ok", true) },
      { "spaces around the value", "HTTP/1.1 200 OK\r\nContent-Length: \t 2 \t\r\n\r\nok",
        ok(200, "ok", true) },
      { "duplicates that disagree",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
        protocol("conflicting Content-Length values") },
      { "a list that disagrees", "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok!",
        protocol("conflicting Content-Length values") },
      { "a sign", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
        protocol("malformed Content-Length") },
      { "negative", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        protocol("malformed Content-Length") },
      { "trailing letters", "HTTP/1.1 200 OK\r\nContent-Length: 2a\r\n\r\nok",
        protocol("malformed Content-Length") },
      { "hexadecimal", "HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok",
        protocol("malformed Content-Length") },
      { "a space inside", "HTTP/1.1 200 OK\r\nContent-Length: 1 1\r\n\r\n",
        protocol("malformed Content-Length") },
      { "a fraction", "HTTP/1.1 200 OK\r\nContent-Length: 2.0\r\n\r\nok",
        protocol("malformed Content-Length") },
      { "empty", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", protocol("malformed Content-Length") },
      { "only commas", "HTTP/1.1 200 OK\r\nContent-Length: , ,\r\n\r\n",
        protocol("malformed Content-Length") },
      { "2^64, one past the largest", "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
        protocol("Content-Length out of range") },
      { "30 digits", "HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999999999999999\r\n\r\n",
        protocol("Content-Length out of range") },
      { "2^64 - 1 parses, and is over max_body",
        "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
        too_large("Content-Length over the limit of 1024 bytes") },
      { "a short body, then the peer closes", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        lost("connection closed before the end of the body"), eof = true },
      { "a short body, the connection still open", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        { more = true } },
      { "bytes after the body: done early, connection not reusable",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", ok(200, "ok", false, { used = 40 }) },
      { "a binary body, line breaks and NUL included",
        "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n\000\255\r\n\n\r",
        ok(200, "\000\255\r\n\n\r", true) },
    }
  end)

  describe("chunked", function()
    cases {
      { "two chunks", CHUNKED .. "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", ok(200, "hello world", true) },
      { "hex sizes either case, leading zeros",
        CHUNKED .. "a\r\n0123456789\r\n00B\r\nabcdefghijk\r\n0000\r\n\r\n",
        ok(200, "0123456789abcdefghijk", true) },
      { "an empty body", CHUNKED .. "0\r\n\r\n", ok(200, "", true) },
      { "chunk extensions are ignored",
        CHUNKED .. "5;name=value;q=\"a;b\"\r\nhello\r\n1 ; x\r\n!\r\n0;last\r\n\r\n",
        ok(200, "hello!", true) },
      { "trailers are read and dropped",
        CHUNKED .. "2\r\nok\r\n0\r\nX-Checksum: abc\r\nConnection: close\r\nContent-Length: 99\r\n\r\n",
        ok(200, "ok", true) },
      { "coding names are case-insensitive",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding:  CHUNKED \r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ok(200, "ok", true) },
      { "chunked and Content-Length: chunked wins, the connection closes",
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
          .. "2\r\nok\r\n0\r\n\r\n",
        ok(200, "ok", false) },
      { "bytes after the last chunk", CHUNKED .. "2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n",
        ok(200, "ok", false, { used = #CHUNKED + 12 }) },
      { "gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        protocol("unsupported Transfer-Encoding") },
      { "gzip alone", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        protocol("unsupported Transfer-Encoding") },
      { "identity", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
        protocol("unsupported Transfer-Encoding") },
      { "chunked twice, in a list", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        protocol("unsupported Transfer-Encoding") },
      { "chunked twice, in two lines",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        protocol("unsupported Transfer-Encoding") },
      { "chunked with a parameter", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
        protocol("unsupported Transfer-Encoding") },
      { "an empty Transfer-Encoding",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nContent-Length: 0\r\n\r\n",
        protocol("unsupported Transfer-Encoding") },
      { "in an HTTP/1.0 response", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        protocol("Transfer-Encoding in an HTTP/1.0 response") },
      { "a size of 2^64", CHUNKED .. "10000000000000000\r\n", protocol("chunk size out of range") },
      { "a size of 2^64 - 1, over max_body", CHUNKED .. "ffffffffffffffff\r\n",
        too_large("response body over the limit of 1024 bytes") },
      { "a size that is not hex", CHUNKED .. "g\r\n", protocol("malformed chunk size") },
      { "an empty size line", CHUNKED .. "\r\n", protocol("malformed chunk size") },
      { "0x prefix", CHUNKED .. "0x5\r\nhello\r\n", protocol("malformed chunk size") },
      { "a negative size", CHUNKED .. "-5\r\n", protocol("malformed chunk size") },
      { "a space after the size, no extension", CHUNKED .. "5 \r\nhello\r\n",
        protocol("malformed chunk size") },
      { "a bare CR in a size line", CHUNKED .. "5\rx\r\nhello\r\n",
        protocol("bare CR in the chunked body") },
      { "a 5000-byte extension", CHUNKED .. "1;" .. ("e"):rep(5000) .. "\r\nx\r\n0\r\n\r\n",
        protocol("chunk-size line too long") },
      { "data longer than its size", CHUNKED .. "5\r\nhelloX\r\n0\r\n\r\n",
        protocol("chunk data not followed by CRLF") },
      { "data shorter than its size", CHUNKED .. "5\r\nhel\r\n0\r\n\r\n",
        protocol("chunk data not followed by CRLF") },
      { "a bad trailer", CHUNKED .. "0\r\nBad Trailer\r\n\r\n", protocol("malformed field line") },
      { "a folded trailer", CHUNKED .. "0\r\nX-T: a\r\n b\r\n\r\n",
        protocol("folded or indented field line") },
      { "100 trailer fields", CHUNKED .. "0\r\n" .. fields(100, "X-T-") .. "\r\n", ok(200, "", true) },
      { "101 trailer fields", CHUNKED .. "0\r\n" .. fields(101, "X-T-") .. "\r\n",
        protocol("trailer section too large (over 100 fields)") },
      { "a 64 KiB trailer", CHUNKED .. "0\r\nX-T: " .. ("t"):rep(65536) .. "\r\n\r\n",
        protocol("trailer section too large (over 65536 bytes)") },
      { "the peer closes in a chunk", CHUNKED .. "5\r\nhel",
        lost("connection closed in the chunked body"),
        eof = true },
      { "the peer closes before the last chunk", CHUNKED .. "5\r\nhello\r\n",
        lost("connection closed in the chunked body"), eof = true },
      { "the peer closes in the trailers", CHUNKED .. "0\r\nX-T: 1\r\n",
        lost("connection closed in the chunked body"), eof = true },
      { "the peer closes before the final CRLF", CHUNKED .. "0\r\n",
        lost("connection closed in the chunked body"), eof = true },
    }
  end)

  describe("close-delimited bodies", function()
    cases {
      { "no length, no chunked: the body ends at eof", "HTTP/1.1 200 OK\r\n\r\nhello",
        ok(200, "hello", false),
        eof = true },
      { "an empty body at eof", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n", ok(200, "", false),
        eof = true },
      { "HTTP/1.0", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n{}",
        ok(200, "{}", false), eof = true },
      { "more until eof", "HTTP/1.1 200 OK\r\n\r\nhello", { more = true } },
      { "over max_body as it streams", "HTTP/1.1 200 OK\r\n\r\n" .. ("x"):rep(11),
        too_large("response body over the limit of 10 bytes"), max_body = 10 },
      { "exactly max_body", "HTTP/1.1 200 OK\r\n\r\n" .. ("x"):rep(10), ok(200, ("x"):rep(10), false),
        max_body = 10, eof = true },
    }
  end)

  describe("responses without a body", function()
    cases {
      { "204 with a Content-Length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        ok(204, "", true) },
      { "304 with the Content-Length a 200 would have",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n", ok(304, "", true) },
      { "204 with an invalid Content-Length", "HTTP/1.1 204 No Content\r\nContent-Length: abc\r\n\r\n",
        ok(204, "", true) },
      { "204 with chunked: done, but a body may follow, so no reuse",
        "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", ok(204, "", false) },
      { "304 followed by bytes", "HTTP/1.1 304 Not Modified\r\n\r\nhello",
        ok(304, "", false, { used = 29 }) },
      { "204 over HTTP/1.0 with keep-alive", "HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
        ok(204, "", true) },
    }
  end)

  describe("Connection", function()
    cases {
      { "close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", false) },
      { "CLOSE in a list",
        "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", false) },
      { "close among other tokens, spaced",
        "HTTP/1.1 200 OK\r\nConnection: upgrade ,\tclose ,\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", false) },
      { "close in a second field line",
        "HTTP/1.1 200 OK\r\nConnection: x-a\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", false) },
      { "closed is not close", "HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", true) },
      { "HTTP/1.0 with keep-alive",
        "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", true) },
      { "HTTP/1.0 with keep-alive and close",
        "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", false) },
      { "HTTP/1.0 with another token",
        "HTTP/1.0 200 OK\r\nConnection: x-keep\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", false) },
    }
  end)

  describe("max_body", function()
    cases {
      { "Content-Length equal to max_body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
        ok(200, "0123456789", true), max_body = 10 },
      { "Content-Length over max_body, refused before any body byte",
        "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
        too_large("Content-Length over the limit of 10 bytes"),
        max_body = 10 },
      { "chunks adding up to max_body", CHUNKED .. "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
        ok(200, "helloworld", true), max_body = 10 },
      { "a chunk over max_body, refused at its size line", CHUNKED .. "5\r\nhello\r\n6\r\n",
        too_large("response body over the limit of 10 bytes"), max_body = 10 },
      { "max_body 0 and Content-Length: 0", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ok(200, "", true),
        max_body = 0 },
      { "max_body 0 and one byte", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        too_large("Content-Length over the limit of 0 bytes"), max_body = 0 },
      { "a 100,000-byte body", "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" .. ("b"):rep(100000),
        ok(200, ("b"):rep(100000), true), max_body = 100000 },
    }
  end)

  describe("eof", function()
    cases {
      { "before any byte", "", lost("connection closed before a response"), eof = true },
      { "in the status line", "HTTP/1.", lost("connection closed in the headers"), eof = true },
      { "after the status line", "HTTP/1.1 200 OK\r\n",
        lost("connection closed in the headers"), eof = true },
      { "in a field line", "HTTP/1.1 200 OK\r\nContent-Len", lost("connection closed in the headers"),
        eof = true },
      { "before the empty line", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
        lost("connection closed in the headers"), eof = true },
      { "after a complete response: done, not reusable",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", ok(200, "ok", false), eof = true },
    }
  end)

  describe("Retry-After", function()
    local function retry_after(value, now)
      local head = "HTTP/1.1 503 Busy\r\nRetry-After: " .. value .. "\r\nContent-Length: 0\r\n\r\n"
      local p = partner._http1(MAX)
      local st, used = p:feed(head)
      assert.same({ "done", #head }, { st, used })
      return p:response(now or NOW).retry_after
    end

    local VALID = {
      { "delta-seconds", "120", 120 },
      { "zero", "0", 0 },
      { "leading zeros", "0007", 7 },
      { "with spaces around", "  30\t", 30 },
      { "a delta over 2^31 saturates (RFC 9111 1.2.2)", "99999999999999999999999", 2147483648 },
      { "IMF-fixdate, two minutes ahead", "Sun, 06 Nov 1994 08:51:37 GMT", 120 },
      { "IMF-fixdate, now", "Sun, 06 Nov 1994 08:49:37 GMT", 0 },
      { "IMF-fixdate in the past gives 0", "Sat, 05 Nov 1994 08:49:37 GMT", 0 },
      { "IMF-fixdate a year ahead (1995 is not a leap year)",
        "Mon, 06 Nov 1995 08:49:37 GMT", 365 * 86400 },
      { "RFC 850 date", "Sunday, 06-Nov-94 08:51:37 GMT", 120 },
      { "asctime date", "Sun Nov  6 08:51:37 1994", 120 },
      { "asctime date, two-digit day", "Wed Nov 16 08:49:37 1994", 10 * 86400 },
      { "asctime date, zero-padded day (2DIGIT)", "Sun Nov 06 08:51:37 1994", 120 },
      { "29 February of a leap year", "Tue, 29 Feb 2000 00:00:00 GMT", 951782400 - NOW },
      { "a leap second", "Sun, 06 Nov 1994 08:49:60 GMT", 23 },
    }
    for _, v in ipairs(VALID) do
      it(v[1], function() assert.equal(v[3], retry_after(v[2])) end)
    end

    it("a fractional now gives a fractional wait", function()
      assert.equal(119.5, retry_after("Sun, 06 Nov 1994 08:51:37 GMT", NOW + 0.5))
    end)

    it("RFC 850 two-digit years: more than 50 years ahead means the past century", function()
      local now = 1700000000 -- 2023-11-14
      assert.equal(0, retry_after("Tuesday, 01-Jan-80 00:00:00 GMT", now)) -- 1980
      assert.equal(1140140800, retry_after("Saturday, 01-Jan-60 00:00:00 GMT", now)) -- 2060
    end)

    local INVALID = {
      { "a fraction", "1.5" }, { "negative", "-1" }, { "a sign", "+1" }, { "hex", "0x10" },
      { "an exponent", "1e3" }, { "two numbers", "1 2" }, { "empty", "" }, { "a word", "soon" },
      { "UTC instead of GMT", "Sun, 06 Nov 1994 08:49:37 UTC" },
      { "a numeric zone", "Sun, 06 Nov 1994 08:49:37 +0000" },
      { "lower-case day name", "sun, 06 Nov 1994 08:49:37 GMT" },
      { "lower-case month", "Sun, 06 nov 1994 08:49:37 GMT" },
      { "one-digit day in IMF-fixdate", "Sun, 6 Nov 1994 08:49:37 GMT" },
      { "31 February", "Sun, 31 Feb 1994 08:49:37 GMT" },
      { "29 February 1900 (not a leap year)", "Thu, 29 Feb 1900 00:00:00 GMT" },
      { "day 0", "Sun, 00 Nov 1994 08:49:37 GMT" },
      { "hour 24", "Sun, 06 Nov 1994 24:00:00 GMT" },
      { "minute 60", "Sun, 06 Nov 1994 08:60:00 GMT" },
      { "second 61", "Sun, 06 Nov 1994 08:49:61 GMT" },
      { "a trailing character", "Sun, 06 Nov 1994 08:49:37 GMTX" },
      { "an ISO 8601 date", "1994-11-06T08:49:37Z" },
      { "RFC 850 with a short day name", "Sun, 06-Nov-94 08:49:37 GMT" },
      { "asctime with a one-digit day, unpadded", "Sun Nov 6 08:49:37 1994" },
      { "longer than 63 bytes", ("1"):rep(64) },
    }
    for _, v in ipairs(INVALID) do
      it("absent when invalid: " .. v[1], function() assert.is_nil(retry_after(v[2])) end)
    end

    it("is absent without the field", function()
      local p = partner._http1(MAX)
      p:feed("HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
      assert.is_nil(p:response(NOW).retry_after)
    end)

    it("is read from the final response only", function()
      local p = partner._http1(MAX)
      assert.equal("done", (p:feed("HTTP/1.1 103 Early Hints\r\nRetry-After: 5\r\n\r\n"
        .. "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")))
      assert.is_nil(p:response(NOW).retry_after)
      p = partner._http1(MAX)
      assert.equal("done", (p:feed("HTTP/1.1 100 Continue\r\nRetry-After: 5\r\n\r\n"
        .. "HTTP/1.1 429 Too Many\r\nRetry-After: 9\r\nContent-Length: 0\r\n\r\n")))
      assert.equal(9, p:response(NOW).retry_after)
    end)

    it("the last field line wins", function()
      local p = partner._http1(MAX)
      p:feed("HTTP/1.1 503 Busy\r\nRetry-After: 5\r\nRetry-After: 8\r\nContent-Length: 0\r\n\r\n")
      assert.equal(8, p:response(NOW).retry_after)
    end)

    it("trailers do not set it", function()
      local p = partner._http1(MAX)
      p:feed(CHUNKED .. "0\r\nRetry-After: 5\r\n\r\n")
      assert.is_nil(p:response(NOW).retry_after)
    end)
  end)

  describe("the Lua object", function()
    it("feed says more with the bytes used, then done", function()
      local p = partner._http1(MAX)
      assert.same({ "more", 17 }, { p:feed("HTTP/1.1 200 OK\r\n") })
      assert.same({ "more", 0 }, { p:feed("") })
      assert.same({ "done", 21 }, { p:feed("Content-Length: 0\r\n\r\n") })
      assert.same({ status = 200, body = "", keep_alive = true }, p:response(NOW))
    end)

    it("after done, more bytes use nothing and end reuse; an empty feed changes nothing", function()
      local p = partner._http1(MAX)
      p:feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
      assert.same({ "done", 0 }, { p:feed("") })
      assert.is_true(p:response(NOW).keep_alive)
      assert.same({ "done", 0 }, { p:feed("x") })
      assert.is_false(p:response(NOW).keep_alive)
    end)

    it("eof after done says done again", function()
      local p = partner._http1(MAX)
      p:feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
      assert.same({ "done", 0 }, { p:eof() })
      assert.same({ "done", 0 }, { p:eof() })
      assert.is_false(p:response(NOW).keep_alive)
    end)

    it("after an error, feed and eof say the same error", function()
      local p = partner._http1(MAX)
      local err = { nil, "protocol", "no HTTP/1.x status line" }
      assert.same(err, { p:feed("HTTP/2 200\r\n\r\n") })
      assert.same(err, { p:feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") })
      assert.same(err, { p:eof() })
    end)

    it("two pipelined responses: the first ends where the second begins", function()
      local a = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
      local b = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n"
      local p = partner._http1(MAX)
      local st, used = p:feed(a .. b)
      assert.same({ "done", #a }, { st, used })
      assert.same({ status = 200, body = "a", keep_alive = false }, p:response(NOW))
      local q = partner._http1(MAX)
      assert.same({ "done", #b }, { q:feed((a .. b):sub(used + 1)) })
      assert.equal("b", q:response(NOW).body)
    end)

    it("response before the end raises", function()
      local p = partner._http1(MAX)
      p:feed("HTTP/1.1 200 OK\r\n")
      assert.has_error(function() p:response(NOW) end, "response: the response is not complete")
      p:feed("Content-Length: 0\r\n\r\n")
      assert.has_error(function() p:response() end)
    end)

    it("response after an error raises", function()
      local p = partner._http1(MAX)
      p:feed("nope")
      assert.has_error(function() p:response(NOW) end, "response: the response is not complete")
    end)

    it("checks its arguments", function()
      for _, bad in ipairs({ -1, 1.5, "x", {}, 0 / 0 }) do
        assert.has_error(function() partner._http1(bad) end)
      end
      assert.has_error(function() partner._http1() end)
      local p = partner._http1(MAX)
      assert.has_error(function() p:feed() end)
      assert.has_error(function() p:feed({}) end)
      assert.has_error(function() p.feed(nil, "x") end)
      assert.has_error(function() p.feed(io.stdout, "x") end)
    end)

    it("a huge max_body is accepted (clamped)", function()
      local p = partner._http1(2 ^ 60)
      local input = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
      assert.same({ "done", #input }, { p:feed(input) })
    end)

    it("shows its state in tostring", function()
      local p = partner._http1(MAX)
      assert.equal("yeastar.partner.Http1 (reading)", tostring(p))
      p:feed("HTTP/1.1 204 No Content\r\n\r\n")
      assert.equal("yeastar.partner.Http1 (done)", tostring(p))
      p = partner._http1(MAX)
      p:feed("x")
      assert.equal("yeastar.partner.Http1 (failed)", tostring(p))
    end)

    it("one metatable for every parser", function()
      assert.equal(getmetatable(partner._http1(1)), getmetatable(partner._http1(2)))
    end)

    it("frees its buffers when collected", function()
      collectgarbage()
      local before = collectgarbage("count")
      for _ = 1, 200 do
        local p = partner._http1(1000000)
        p:feed("HTTP/1.1 200 OK\r\nContent-Length: 500000\r\n\r\n" .. ("z"):rep(1000))
      end
      collectgarbage()
      collectgarbage()
      -- The C buffers are malloc'd, outside Lua's count; what this checks is that nothing
      -- Lua-side is kept. Leaks of the C side are for the ASan run (make memcheck) to find.
      assert.is_true(collectgarbage("count") < before + 256)
    end)
  end)
end)
