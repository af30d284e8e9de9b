-- spec/21-cli_spec.lua: bin/yeastar-partner run as a process, by the runtime under test, against
-- the fake portal: exit codes, stdout (JSON, CSV, table), stderr, and what reached the portal.
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"
local q = helpers.shell_quote

local CLI = "bin/yeastar-partner"
local SECRET = "cli-spec-secret-3e8a51f0c2d7"
local ORDER_PATH = helpers.ORDER_PATH
local TOKEN_PATH = helpers.TOKEN_PATH
local ACTIVE_PATH = "/product/openapi/instance_subscription/v1/active"
local DETAIL_PATH = "/product/openapi/instance_product/v1/detail"
local COMMANDS = { "call", "status", "enable", "ensure-auto-renewal", "renew-remote-management", "orders",
                   "products", "renewal-terms", "audit" }
-- Unset for every run, so nothing of whoever runs busted leaks in: the module's variables, the
-- proxies libcurl reads, and the per-version cpath variables (LUA_CPATH is set on purpose).
local ENV_NAMES = { "https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY", "no_proxy",
                    "NO_PROXY", "LUA_CPATH_5_2", "LUA_CPATH_5_3", "LUA_CPATH_5_4", "TERM" }
for _, v in ipairs(partner.env_variables) do ENV_NAMES[#ENV_NAMES + 1] = v.name end

-- An ID's decimal text, whatever the decoder made of it on this runtime.
local function text(v)
  return (tostring(v):gsub("U?LL$", ""))
end

local function lines_of(s)
  local out = {}
  for line in s:gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

describe("yeastar-partner (bin/yeastar-partner)", function()
  local portal

  setup(function()
    portal = helpers.start_portal { client_secret = SECRET }
  end)

  teardown(function()
    if portal then portal:stop() end
  end)

  before_each(function()
    portal:reset()
  end)

  -- Runs `<LUA> bin/yeastar-partner args...` with the portal's four variables (opts.env adds or
  -- overrides, false removes) and LUA_CPATH = this process's cpath, so the CLI loads the build
  -- under test (busted --cpath, the ASan build under `make memcheck`). stdin is empty (opts.stdin:
  -- a file), TERM unset. opts.command replaces `<LUA> bin/yeastar-partner args`; opts.shell wraps
  -- the command (in a pty).
  local function run(args, opts)
    opts = opts or {}
    local env = {
      YEASTAR_BASE_URL = portal.base_url, YEASTAR_CA_FILE = portal.ca_file,
      YEASTAR_CLIENT_ID = portal.client_id, YEASTAR_CLIENT_SECRET = portal.client_secret,
      LUA_CPATH = package.cpath,
    }
    for k, v in pairs(opts.env or {}) do env[k] = v or nil end
    local cmd = { "env" }
    for _, k in ipairs(ENV_NAMES) do cmd[#cmd + 1] = "-u " .. k end
    if not env.LUA_CPATH then cmd[#cmd + 1] = "-u LUA_CPATH" end
    local names = {}
    for k in pairs(env) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do cmd[#cmd + 1] = k .. "=" .. q(env[k]) end
    local argv = { opts.lua or helpers.LUA, q(opts.cli or CLI) }
    for _, a in ipairs(args) do argv[#argv + 1] = q(a) end
    local line = opts.command or table.concat(argv, " ")
    if opts.shell then line = opts.shell(line) end
    cmd[#cmd + 1] = line
    local out_file, err_file = os.tmpname(), os.tmpname()
    local _, code = helpers.run(("cd %s && %s <%s >%s 2>%s"):format(q(opts.cwd or "."), table.concat(cmd, " "),
      q(opts.stdin or "/dev/null"), q(out_file), q(err_file)))
    local r = { code = code, stdout = helpers.read_file(out_file) or "", stderr = helpers.read_file(err_file) or "" }
    os.remove(out_file)
    os.remove(err_file)
    -- Whatever happened, no secret is ever printed.
    for _, secret in ipairs { SECRET, env.YEASTAR_CLIENT_SECRET } do
      assert.is_nil((r.stdout .. r.stderr):find(secret, 1, true), "a client secret was printed:\n"
        .. r.stdout .. r.stderr)
    end
    return r
  end

  -- stdout as one JSON value (decoded by the module: IDs keep their digits).
  local function json(r)
    local v, err = partner.json_decode((r.stdout:gsub("\n$", "")))
    assert(v ~= nil, "stdout is not one JSON value (" .. tostring(err) .. "):\n" .. r.stdout .. r.stderr)
    assert.are.equal(1, select(2, r.stdout:gsub("\n", "")), "JSON is one line")
    return v
  end

  local function requests(method, path)
    local n, bodies = 0, {}
    for _, req in ipairs(portal:requests()) do
      if req.method == method and (not path or req.path == path) then
        n = n + 1
        bodies[n] = req.body
      end
    end
    return n, bodies
  end

  -- POSTs other than logging in: the ones that change something.
  local function changes()
    local n = 0
    for _, req in ipairs(portal:requests()) do
      if req.method == "POST" and req.path ~= TOKEN_PATH then n = n + 1 end
    end
    return n
  end

  local function assert_usage(r, message)
    assert.are.equal(2, r.code, r.stdout .. r.stderr)
    assert.are.equal("", r.stdout)
    assert.matches("yeastar-partner: " .. message, r.stderr, 1, true)
  end

  describe("help, version and usage", function()
    it("--help lists every command and the environment, exit 0, no configuration needed", function()
      local r = run({ "--help" }, { env = { YEASTAR_BASE_URL = false, YEASTAR_CLIENT_ID = false,
                                            YEASTAR_CLIENT_SECRET = false } })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("", r.stderr)
      assert.matches("^usage: yeastar%-partner ", r.stdout)
      for _, name in ipairs(COMMANDS) do assert.matches("\n  " .. name .. " ", r.stdout, 1, true) end
      for _, v in ipairs(partner.env_variables) do assert.matches(v.name, r.stdout, 1, true) end
      assert.matches("3 ambiguous", r.stdout, 1, true)
      assert.are.equal(0, #portal:requests())
    end)

    for _, name in ipairs(COMMANDS) do
      it("`" .. name .. " --help` prints its usage on stdout, exit 0; `help " .. name .. "` too", function()
        local r = run({ name, "--help" })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.equal("", r.stderr)
        assert.matches("^usage: yeastar%-partner " .. name:gsub("%-", "%%-") .. "[ \n]", r.stdout)
        assert.matches("Exit status:", r.stdout, 1, true)
        assert.are.same(r, run({ "help", name }))
        -- --help wins over anything else on the line
        assert.are.equal(r.stdout, run({ name, "--no-such-option", "-h" }).stdout)
      end)
    end

    it("call --help lists every method of the endpoint table with its parameters", function()
      local r = run({ "call", "--help" })
      assert.are.equal(0, r.code)
      for name in pairs(partner.endpoints) do assert.matches("\n  " .. name .. " ", r.stdout, 1, true) end
      assert.matches("planOrServiceId*:integer", r.stdout, 1, true)
    end)

    it("the README's Command line section shows every command's usage line", function()
      local readme = assert(helpers.read_file("README.md"))
      local section = assert(readme:match("\n## Command line\n(.-)\n## "), "README: no Command line section")
      section = section:gsub("\\|", "|") -- table cells escape their pipes
      for _, name in ipairs(COMMANDS) do
        local usage = run({ name, "--help" }).stdout:match("^usage: yeastar%-partner ([^\n]*)\n")
          :gsub(" %[%-%-format json|csv|table%]$", "")
        assert.truthy(section:find("`" .. usage .. "`", 1, true), "README lacks `" .. usage .. "`")
      end
    end)

    it("the README's examples run against the fake portal", function()
      local readme = assert(helpers.read_file("README.md"))
      local block = assert(readme:match("\n## Command line\n.-```sh\n(.-)```"), "README: no sh block")
      block = block:gsub("\\\n%s*", "") -- continuation lines
      local n = 0
      for line in block:gmatch("[^\n]+") do
        line = line:gsub("%s+#.*$", ""):gsub("%s*>%s*%S+$", "") -- comments, a redirection
        local command = assert(line:match("^yeastar%-partner (.*)$"), line)
        local r = run({}, { command = helpers.LUA .. " " .. CLI .. " " .. command })
        -- Exit 1 where a device fails on purpose: examples/devices.csv lists one the account
        -- does not have, and the fake portal seeds one without an expiry date (`unknown`).
        local failing = command:match("^ensure%-auto%-renewal examples/devices%.csv") or command:match("^audit")
        assert.are.equal(failing and 1 or 0, r.code, line .. "\n" .. r.stderr)
        assert.truthy(#r.stdout > 0, line)
        n = n + 1
      end
      assert.are.equal(11, n)
    end)

    it("--version prints the module's version", function()
      local r = run({ "--version" })
      assert.are.equal(0, r.code)
      assert.matches("^yeastar%-partner " .. partner._VERSION:gsub("%.", "%%.") .. " %(", r.stdout)
    end)

    it("a missing or unknown command, an unknown option, a bad value: exit 2, nothing sent", function()
      local r = run({})
      assert_usage(r, "which command?")
      assert_usage(run({ "frobnicate" }), "unknown command 'frobnicate'")
      r = run({ "status", "3651E0529415", "12", "--bogus" })
      assert_usage(r, "unknown option '--bogus' for status")
      assert.matches("usage: yeastar-partner status SN PRODUCT_ID\n", r.stderr, 1, true)
      assert_usage(run({ "--format", "xml", "orders" }), "--format is json, csv or table, got 'xml'")
      assert_usage(run({ "orders", "--format" }), "--format needs a value")
      assert_usage(run({ "status", "3651E0529415" }), "too few arguments")
      assert_usage(run({ "status", "3651E0529415", "12", "13" }), "unexpected argument '13'")
      assert_usage(run({ "status", "3651E0529415", "twelve" }), "PRODUCT_ID must be digits, got 'twelve'")
      assert_usage(run({ "orders", "--all=yes" }), "--all takes no value")
      assert_usage(run({ "ensure-auto-renewal", "examples/devices.csv", "--concurrency", "0" }),
        "--concurrency takes a whole number from 1 to 256, got '0'")
      assert.are.equal(0, #portal:requests())
    end)

    it("missing configuration: exit 2 naming the variables, nothing sent", function()
      local r = run({ "status", "3651E0529415", "12" }, { env = { YEASTAR_BASE_URL = false } })
      assert_usage(r, "missing environment variable YEASTAR_BASE_URL (")
      r = run({ "orders" }, { env = { YEASTAR_TIMEOUT = "30s" } })
      assert_usage(r, "YEASTAR_TIMEOUT must be a number of seconds")
      assert.are.equal(0, #portal:requests())
    end)
  end)

  describe("finding the module", function()
    local tmp
    before_each(function()
      tmp = helpers.run("mktemp -d -t yeastar-cli.XXXXXX")
      assert.truthy(tmp:find("yeastar-cli.", 1, true))
    end)
    after_each(function()
      os.execute("rm -rf -- " .. q(tmp))
    end)

    -- The module this busted run loaded, to lay out a repository around it.
    local function module_so()
      for template in package.cpath:gmatch("[^;]+") do
        local candidate = template:gsub("%?", "yeastar/partner")
        local fh = io.open(candidate, "rb")
        if fh then fh:close() return candidate end
      end
    end

    it("run as <repo>/bin/yeastar-partner from anywhere, it loads <repo>/build/<runtime>/", function()
      local so = assert(module_so())
      if so:sub(1, 1) ~= "/" then so = helpers.run("pwd") .. "/" .. so end
      local build = tmp .. "/build/" .. helpers.RUNTIME .. "/yeastar"
      os.execute(("mkdir -p %s %s/bin && cp %s %s/bin/ && ln -s %s %s/partner.so")
        :format(q(build), q(tmp), q(CLI), q(tmp), q(so), q(build)))
      local r = run({ "status", "3651E0529415", "12" }, { cli = tmp .. "/bin/yeastar-partner", cwd = "/",
        env = { LUA_CPATH = false } })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({ productNo = "3651E0529415", productId = 12, autoRenew = true }, json(r))
    end)

    it("run by an interpreter without a build, it runs itself again on one with a build", function()
      local so = assert(module_so())
      if so:sub(1, 1) ~= "/" then so = helpers.run("pwd") .. "/" .. so end
      local build = tmp .. "/build/" .. helpers.RUNTIME .. "/yeastar"
      os.execute(("mkdir -p %s %s/bin && cp %s %s/bin/ && ln -s %s %s/partner.so")
        :format(q(build), q(tmp), q(CLI), q(tmp), q(so), q(build)))
      local other = helpers.RUNTIME == "5.1" and "lua5.4" or "lua5.1"
      local r = run({ "status", "3651E0999999", "12" }, { cli = tmp .. "/bin/yeastar-partner", cwd = "/",
        lua = other, env = { LUA_CPATH = false } })
      assert.are.equal(1, r.code, r.stderr) -- the exit status passes through
      assert.matches("product_not_found", r.stderr, 1, true)
      r = run({ "--version" }, { cli = tmp .. "/bin/yeastar-partner", cwd = "/", lua = other,
        env = { LUA_CPATH = false } })
      assert.are.equal(0, r.code, r.stderr)
      assert.matches(jit and "(LuaJIT" or "(" .. _VERSION .. ")", r.stdout, 1, true)
    end)

    it("a LUA_CPATH given comes first: a broken module there is the one it tries", function()
      os.execute(("mkdir -p %s/yeastar && echo 'not a shared object' > %s/yeastar/partner.so"):format(q(tmp), q(tmp)))
      local r = run({ "--version" }, { env = { LUA_CPATH = tmp .. "/?.so" } })
      assert.are.equal(2, r.code)
      assert.matches("yeastar-partner: cannot load the module yeastar.partner", r.stderr, 1, true)
      assert.matches(tmp .. "/yeastar/partner.so", r.stderr, 1, true)
    end)
  end)

  describe("call", function()
    it("sends a 19-digit ID exactly and prints the result as JSON", function()
      local r = run({ "call", "enable_auto_renewal", "productNo=3651E0529416", "productId=12",
                      "planOrServiceId=3049040650094403584" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("true\n", r.stdout)
      assert.are.equal("", r.stderr)
      local n, bodies = requests("POST", ACTIVE_PATH)
      assert.are.equal(1, n)
      -- productId is a string in this endpoint, planOrServiceId a number: the table's types
      assert.are.equal('{"productNo":"3651E0529416","productId":"12","planOrServiceId":3049040650094403584}', bodies[1])
      assert.is_true(portal:state().devices["3651E0529416"].autoRenew)
    end)

    it("prints big IDs of the result with every digit", function()
      local r = run({ "call", "plans_and_services", "productId=15" })
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("3049036224189325312", r.stdout, 1, true)
      local plans = json(r).planList
      assert.are.equal("3049036224189325312", text(plans[1].planId))
      assert.are.equal("3049036224189325400", text(plans[2].planId))
    end)

    it("key:=JSON passes lists and objects; create_order's body is exact", function()
      local r = run({ "call", "create_order", "operationType=renew_plan", "productId=15",
        "billingId=3197218168379846218", "poNumber=PO-CLI-CALL",
        'serviceList:=[{"serviceType":"plan","serviceId":3049036224189325312,"purchaseType":"renew",'
          .. '"billingModel":"recurring","billingCycle":"annually","multiCycle":1}]' })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("MK3400814131142238208", json(r).orderNo)
      local n, bodies = requests("POST", ORDER_PATH)
      assert.are.equal(1, n)
      assert.matches('"billingId":3197218168379846218,', bodies[1], 1, true)
      assert.matches('"serviceId":3049036224189325312,', bodies[1], 1, true)
      assert.matches('"poNumber":"PO-CLI-CALL"', bodies[1], 1, true)
    end)

    it("a method without parameters, a paged one with some", function()
      local r = run({ "call", "billing_contacts" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("3197218168379846218", text(json(r)[1].billingContactId))
      r = run({ "call", "orders", "pageSize=2", "pageNo=3" })
      assert.are.equal(0, r.code, r.stderr)
      local page = json(r)
      assert.are.same({ 3, 2, 2 }, { page.pageNo, page.pageSize, #page.results })
    end)

    it("the portal saying no: exit 1, the error's fields on stderr", function()
      local r = run({ "call", "auto_renewal_status", "productNo=3651E0999999", "productId=12" })
      assert.are.equal(1, r.code)
      assert.are.equal("", r.stdout)
      assert.matches("^yeastar%-partner: auto_renewal_status: api error product_not_found %(HTTP 404%): "
        .. "device 3651E0999999 is not in this account %[request [%w%-]+%]\n$", r.stderr)
    end)

    it("an order whose answer is lost: exit 3, sent once", function()
      portal:fault { match = { method = "POST", path = ORDER_PATH }, status = 500, code = "internal_error" }
      local r = run({ "call", "create_order", "operationType=renew_plan", "productId=15",
        "billingId=3197218168379846218",
        'serviceList:=[{"serviceType":"plan","serviceId":"3049036224189325312"}]' })
      assert.are.equal(3, r.code, r.stderr)
      assert.are.equal("", r.stdout)
      assert.matches("yeastar-partner: create_order: ambiguous error internal_error (HTTP 500)", r.stderr, 1, true)
      assert.matches("before sending it again", r.stderr, 1, true)
      assert.are.equal(1, (requests("POST", ORDER_PATH)))
    end)

    it("mistakes are usage errors naming the parameter, and send nothing", function()
      assert_usage(run({ "call", "auto_renewal_status", "productNo=X", "productID=12" }),
        "auto_renewal_status: unknown parameter 'productID' (did you mean 'productId'?)")
      assert_usage(run({ "call", "auto_renewal_status", "productNo=X", "productId=twelve" }),
        "auto_renewal_status: parameter 'productId' must be an integer or a decimal string")
      assert_usage(run({ "call", "auto_renewal_status" }), "auto_renewal_status: parameter 'productNo' is required")
      assert_usage(run({ "call", "order" }), "unknown method 'order'")
      assert_usage(run({ "call" }), "missing arguments")
      assert_usage(run({ "call", "create_order", "serviceList=x" }),
        "parameter 'serviceList' is a list: write serviceList:=JSON")
      assert_usage(run({ "call", "create_order", "serviceList:=[1," }), "serviceList: not a JSON value")
      assert_usage(run({ "call", "create_subordinate_user", "sendUserActivationEmail=yes" }),
        "parameter 'sendUserActivationEmail' is true or false, got 'yes'")
      assert_usage(run({ "call", "orders", "pageNo=1", "pageNo=2" }), "parameter 'pageNo' is given twice")
      assert_usage(run({ "call", "orders", "pageNo" }), "'pageNo' is neither key=value nor key:=JSON")
      assert_usage(run({ "call", "regions", "--format", "csv" }), "call prints JSON only")
      assert.are.equal(0, #portal:requests())
    end)

    it("a wrong secret: an auth error, exit 1, and neither secret is printed", function()
      local r = run({ "call", "request_access_token" }, { env = { YEASTAR_CLIENT_SECRET = "wrong-secret-9d1c7b3a5e" } })
      assert.are.equal(1, r.code)
      assert.matches("yeastar-partner: request_access_token: auth error", r.stderr, 1, true)
      -- A portal quoting the request back (every field of its answer is the request's text):
      -- the module redacts the secret before anything reaches a message.
      portal:fault { match = { path = TOKEN_PATH }, echo = true }
      r = run({ "call", "request_access_token" })
      assert.are.equal(1, r.code)
      assert.matches("[REDACTED]", r.stderr, 1, true)
    end)
  end)

  describe("status and enable", function()
    it("status: JSON by default when stdout is not a terminal", function()
      local r = run({ "status", "3651E0529415", "12" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal('{"autoRenew":true,"productId":12,"productNo":"3651E0529415"}\n', r.stdout)
      assert.are.equal("", r.stderr)
    end)

    it("status as a table and as CSV", function()
      local r = run({ "status", "3651E0529416", "12", "--format", "table" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("productNo     productId  autoRenew\n3651E0529416  12         false\n", r.stdout)
      r = run({ "--format=csv", "status", "3651E0529416", "12" })
      assert.are.equal("productNo,productId,autoRenew\r\n3651E0529416,12,false\r\n", r.stdout)
    end)

    it("status of an unknown device: exit 1", function()
      local r = run({ "status", "3651E0999999", "12" })
      assert.are.equal(1, r.code)
      assert.matches("product_not_found", r.stderr, 1, true)
    end)

    it("enable: one POST with the exact plan ID; the result names it", function()
      local r = run({ "enable", "3076913644890832896", "15", "3049036224189325312" })
      assert.are.equal(0, r.code, r.stderr)
      local out = json(r)
      assert.are.equal("3076913644890832896", out.productNo)
      assert.are.equal("3049036224189325312", text(out.planOrServiceId))
      assert.is_true(out.enabled)
      local n, bodies = requests("POST", ACTIVE_PATH)
      assert.are.equal(1, n)
      assert.matches('"planOrServiceId":3049036224189325312}', bodies[1], 1, true)
      assert.is_true(portal:state().devices["3076913644890832896"].autoRenew)
    end)
  end)

  describe("ensure-auto-renewal", function()
    it("--dry-run on examples/devices.csv: no POST, the report as JSON, progress lines, exit 1", function()
      local r = run({ "ensure-auto-renewal", "examples/devices.csv", "--dry-run" })
      assert.are.equal(1, r.code, r.stderr) -- examples/devices.csv lists an unknown device on purpose
      assert.are.equal(0, changes())
      local report = json(r)
      assert.are.same({ already_on = 2, enabled = 0, would_enable = 4, failed = 1 }, report.totals)
      assert.are.same({ 7, true }, { report.total, report.dry_run })
      assert.are.equal(7, #report.devices)
      for _, d in ipairs(report.devices) do
        if d.productNo == "3651E0999999" then
          assert.are.same({ "failed", "api", "product_not_found" }, { d.outcome, d.err.kind, d.err.code })
        end
      end
      assert.are.equal("3049040650094403584", text(report.devices[1].planOrServiceId))
      -- Progress: one plain line per device when stderr is not a terminal; no summary for JSON.
      local lines = lines_of(r.stderr)
      assert.are.equal(7, #lines, r.stderr)
      for i, line in ipairs(lines) do assert.matches("^%[" .. i .. "/7%] %S+ %(product %d+%): ", line) end
      assert.is_nil(r.stderr:find("\r", 1, true))
      for _, no in ipairs { "3632E0965333", "3076913644890832896", "3651E0529416", "3632E0965334" } do
        assert.is_false(portal:state().devices[no].autoRenew, no)
      end
    end)

    it("for real: enables the four that are off, one POST each; CSV and a summary on stderr", function()
      local r = run({ "ensure-auto-renewal", "--concurrency", "2", "--format", "csv", "examples/devices.csv" })
      assert.are.equal(1, r.code, r.stderr)
      assert.are.equal(4, (requests("POST", ACTIVE_PATH)))
      local lines = lines_of((r.stdout:gsub("\r\n", "\n")))
      assert.are.equal(8, #lines)
      assert.are.equal("productNo,productId,planOrServiceId,outcome,error", lines[1])
      assert.are.equal("3651E0529416,12,3049040650094403584,enabled,", lines[5])
      assert.matches("^3651E0999999,12,3049040650094403584,failed,auto_renewal_status: api error "
        .. "product_not_found %(HTTP 404%)", lines[8])
      local err_lines = lines_of(r.stderr)
      assert.are.equal(8, #err_lines, r.stderr) -- 7 progress lines, then the summary
      assert.are.equal("ensure-auto-renewal: 7 devices: already_on 2, enabled 4, would_enable 0, failed 1",
        err_lines[8])
      for _, no in ipairs { "3632E0965333", "3076913644890832896", "3651E0529416", "3632E0965334" } do
        assert.is_true(portal:state().devices[no].autoRenew, no)
      end
    end)

    it("exit 0 when every device is fine; --quiet prints no progress; - reads stdin", function()
      local csv = os.tmpname()
      local fh = assert(io.open(csv, "w"))
      fh:write("productId,productNo,planOrServiceId\r\n12,3651E0529416,3049040650094403584\r\n")
      fh:close()
      local r = run({ "ensure-auto-renewal", "--quiet", "-", "--format", "table" }, { stdin = csv })
      os.remove(csv)
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("", r.stderr)
      assert.matches("^productNo +productId +planOrServiceId +outcome +error\n3651E0529416 +12 +3049040650094403584 "
        .. "+enabled\n$", r.stdout)
    end)

    it("a malformed CSV is a usage error naming the line, before anything is sent", function()
      local csv = os.tmpname()
      local fh = assert(io.open(csv, "w"))
      fh:write("productNo,productId,planOrServiceId\n3651E0529416,12,3049040650094403584\n",
        "3632E0965333,eleven,3048560232537899008\n")
      fh:close()
      local r = run({ "ensure-auto-renewal", csv })
      os.remove(csv)
      assert_usage(r, csv .. ":3: bad productId 'eleven'")
      assert_usage(run({ "ensure-auto-renewal", "no-such-file.csv" }), "cannot read the device list")
      assert.are.equal(0, #portal:requests())
    end)
  end)

  describe("renew-remote-management", function()
    it("a dry run by default: seed 002's order as JSON, no POST", function()
      local r = run({ "renew-remote-management" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(0, changes())
      -- the body as it would be sent, byte for byte, on every runtime
      assert.matches(',"order":{"operationType":"renew_plan","productId":15,"billingId":3197218168379846218,'
        .. '"serviceList":[{"serviceType":"plan","serviceId":3049036224189325312,', r.stdout, 1, true)
      local out = json(r)
      assert.are.same({ true, "POST", ORDER_PATH }, { out.dry_run, out.method, out.path })
      assert.are.equal("3197218168379846218", text(out.order.billingId))
      assert.are.equal("3049036224189325312", text(out.order.serviceList[1].serviceId))
      assert.are.equal("", r.stderr) -- JSON: no summary line
    end)

    it("the dry run as a table shows the exact body", function()
      local r = run({ "renew-remote-management", "--format", "table" })
      assert.are.equal(0, r.code, r.stderr)
      assert.matches('^dry_run +method +path +body\ntrue +POST +/order/openapi/order/v1/save +{"operationType":'
        .. '"renew_plan","productId":15,"billingId":3197218168379846218,', r.stdout)
      assert.matches("dry run, nothing was ordered", r.stderr, 1, true)
      assert.are.equal(0, changes())
    end)

    it("--commit orders once; again with the same --po orders nothing", function()
      local r = run({ "renew-remote-management", "--commit", "--po", "PO-CLI-1" })
      assert.are.equal(0, r.code, r.stderr)
      local order = json(r)
      assert.are.same({ "MK3400814131142238208", "succeed", false }, { order.orderNo, order.orderStatus, order.existing })
      assert.are.equal(1, (requests("POST", ORDER_PATH)))
      r = run({ "renew-remote-management", "--commit", "--po", "PO-CLI-1", "--format", "table" })
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("^orderNo +orderStatus +orderId +existing\nMK3400814131142238208 +succeed +%d+ +true\n$", r.stdout)
      assert.matches("PO PO-CLI-1 is on order MK3400814131142238208 already", r.stderr, 1, true)
      assert.are.equal(1, (requests("POST", ORDER_PATH)))
    end)

    it("a lost answer with --po: found in the order list, exit 0, sent once", function()
      portal:fault { match = { method = "POST", path = ORDER_PATH }, drop = true, process = true }
      local r = run({ "renew-remote-management", "--commit", "--po", "PO-CLI-LOST" })
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("ambiguous error", r.stderr, 1, true)
      local order = json(r)
      assert.are.same({ "PO-CLI-LOST", true }, { order.customReferenceNo, order.existing })
      assert.are.equal(1, (requests("POST", ORDER_PATH)))
    end)

    it("a lost answer that cannot be settled: exit 3, sent once", function()
      portal:fault { match = { method = "POST", path = ORDER_PATH }, status = 502 }
      local r = run({ "renew-remote-management", "--commit", "--po", "PO-CLI-502" })
      assert.are.equal(3, r.code, r.stderr)
      assert.are.equal("", r.stdout)
      assert.matches("create_order: ambiguous error", r.stderr, 1, true)
      assert.matches("Do NOT simply run this again", r.stderr, 1, true)
      assert.are.equal(1, (requests("POST", ORDER_PATH)))
      portal:fault { match = { method = "POST", path = ORDER_PATH }, status = 502 }
      r = run({ "renew-remote-management", "--commit" })
      assert.are.equal(3, r.code, r.stderr)
      assert.matches("pass --po", r.stderr, 1, true)
    end)

    it("two billing contacts: exit 1 asking for --billing; with it, one order", function()
      portal:config { billing_contacts = 2 }
      local r = run({ "renew-remote-management", "--commit" })
      assert.are.equal(1, r.code)
      assert.matches("billing_contact_required", r.stderr, 1, true)
      assert.matches("--billing ID", r.stderr, 1, true)
      assert.are.equal(0, changes())
      r = run({ "renew-remote-management", "--commit", "--billing", "3197218168379846219", "--plan",
                "3049036224189325312" })
      assert.are.equal(0, r.code, r.stderr)
      local n, bodies = requests("POST", ORDER_PATH)
      assert.are.equal(1, n)
      assert.matches('"billingId":3197218168379846219,', bodies[1], 1, true)
    end)

    it("bad IDs are usage errors", function()
      assert_usage(run({ "renew-remote-management", "--billing", "x1" }), "--billing must be digits, got 'x1'")
      assert_usage(run({ "renew-remote-management", "--po" }), "--po needs a value")
      assert_usage(run({ "renew-remote-management", "--comit" }), "unknown option '--comit'")
      assert.are.equal(0, #portal:requests())
    end)
  end)

  describe("orders and products", function()
    it("orders: the first page, newest first, as a JSON list; --all every order", function()
      local r = run({ "orders", "--page-size", "5" })
      assert.are.equal(0, r.code, r.stderr)
      local first = json(r)
      assert.are.equal(5, #first)
      assert.is_true(tonumber(first[1].id) > tonumber(first[5].id))
      r = run({ "orders", "--all", "--page-size", "50" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(117, #json(r))
    end)

    it("orders as a table and as CSV: a header row, RFC 4180 quoting", function()
      assert.are.equal(0, run({ "renew-remote-management", "--commit", "--po", 'PO "7", a' }).code)
      local r = run({ "orders", "--format", "csv", "--page-size", "2" })
      assert.are.equal(0, r.code, r.stderr)
      local lines = lines_of((r.stdout:gsub("\r\n", "\n")))
      assert.are.equal(3, #lines)
      assert.matches("^id,orderNo,orderStatus,customReferenceNo,", lines[1])
      assert.matches('^%d+,MK3400814131142238208,succeed,"PO ""7"", a",', lines[2])
      assert.matches("^page 1 of %d+ %(118 orders in all%); %-%-all lists every page\n$", r.stderr)
      r = run({ "orders", "--format", "table", "--page-size", "2" })
      lines = lines_of(r.stdout)
      assert.are.equal(3, #lines)
      assert.matches("^id +orderNo +orderStatus +customReferenceNo +", lines[1])
      -- aligned: every column starts where its header does
      local at = lines[1]:find("orderStatus", 1, true)
      assert.are.equal("succeed", lines[2]:sub(at, at + 6))
    end)

    it("products: a product's devices, exact serials; --all; bad usage", function()
      local r = run({ "products", "15", "--all" })
      assert.are.equal(0, r.code, r.stderr)
      local list = json(r)
      assert.are.equal(1, #list)
      assert.are.equal("3076913644890832896", list[1].productNo)
      assert.matches('"productNo":"3076913644890832896"', r.stdout, 1, true)
      r = run({ "products", "12", "--format", "csv" })
      assert.matches("^productNo,productId,currentPlanExpireDate,", r.stdout)
      -- a product without devices: [] as JSON, the header alone as CSV
      assert.are.equal("[]\n", run({ "products", "19" }).stdout)
      assert.are.equal("productNo,productId,currentPlanExpireDate,activationStatus,activationCode,createTime,"
        .. "comment\r\n", run({ "products", "19", "--format", "csv" }).stdout)
      assert_usage(run({ "products", "12", "--all", "--page", "2" }), "--all and --page do not go together")
      assert_usage(run({ "products" }), "missing arguments")
    end)

    it("a failing list: exit 1", function()
      portal:fault { match = { path = "/order/openapi/order/v1/page" }, status = 400, code = "bad_sort" }
      local r = run({ "orders" })
      assert.are.equal(1, r.code)
      assert.matches("orders: api error bad_sort (HTTP 400)", r.stderr, 1, true)
    end)
  end)

  describe("renewal-terms", function()
    it("seed 003: the service's terms as the portal sent them, or as rows", function()
      local r = run({ "renewal-terms", "3632E0965333", "11", "--service", "27946" })
      assert.are.equal(0, r.code, r.stderr)
      local terms = json(r)
      assert.are.same({ "Hotel PMS Integration", "3116037397465776128" }, { terms.name, text(terms.serviceId) })
      r = run({ "renewal-terms", "3632E0965333", "11", "--plan", "27901", "--format", "csv" })
      assert.are.equal(0, r.code, r.stderr)
      local lines = lines_of((r.stdout:gsub("\r\n", "\n")))
      assert.are.equal("item,name,id,pricingId,group,billingCycles,billingModels,multiCycles,"
        .. "purchaseParameter,purchaseParameterId,unitName", lines[1])
      assert.are.equal("plan,Enterprise Plan,3048560232537899008,27901,,monthly annually,recurring,1 2 3,,,", lines[2])
    end)

    it("needs exactly one of --service and --plan", function()
      assert_usage(run({ "renewal-terms", "3632E0965333", "11" }), "give one of --service ID and --plan ID")
      assert_usage(run({ "renewal-terms", "3632E0965333", "11", "--plan", "1", "--service", "2" }),
        "give one of --service ID and --plan ID")
      local r = run({ "renewal-terms", "3632E0965333", "11", "--service", "1" })
      assert.are.equal(1, r.code)
      assert.matches("service_not_found", r.stderr, 1, true)
    end)
  end)

  -- The audit on devices of this spec's own (product 9, which no seed device uses), dated
  -- against a fixed --today, so the verdicts do not depend on the seed or the calendar.
  describe("audit", function()
    local TODAY = "2026-03-01"
    local DEVICES = {
      { productNo = "CLI-AUDIT-OK", productId = 9, planId = "3049040650094403584", autoRenew = false,
        expiry = "2026-06-30" },                                   -- 121 days: ok
      { productNo = "CLI-AUDIT-SOON", productId = 9, planId = "3049040650094403584", autoRenew = false,
        expiry = "2026-03-15" },                                   -- 14 days, off: unprotected
      { productNo = "CLI-AUDIT-COVERED", productId = 9, planId = "3049040650094403584", autoRenew = true,
        expiry = "2026-03-10" },                                   -- 9 days, on: ok
      { productNo = "CLI-AUDIT-GONE", productId = 9, planId = "3049040650094403584", autoRenew = false,
        expiry = "2026-02-01" },                                   -- expired
    }
    local WANT = { ["CLI-AUDIT-OK"] = { "ok", 121 }, ["CLI-AUDIT-SOON"] = { "expiring_unprotected", 14 },
                   ["CLI-AUDIT-COVERED"] = { "ok", 9 }, ["CLI-AUDIT-GONE"] = { "expired", -28 } }
    local AUDIT = { "audit", "--product", "9", "--today", TODAY, "--within", "30" }

    local function audit(extra, opts)
      local args = {}
      for _, a in ipairs(AUDIT) do args[#args + 1] = a end
      for _, a in ipairs(extra or {}) do args[#args + 1] = a end
      return run(args, opts)
    end

    before_each(function()
      portal:_control("POST", "/_control/devices", { devices = DEVICES })
    end)

    it("JSON: every device with its verdict, the totals, exit 0", function()
      local r = audit()
      assert.are.equal(0, r.code, r.stderr)
      local report = json(r)
      assert.are.same({ TODAY, 30, 4 }, { report.today, report.within_days, report.total })
      assert.are.same({ ok = 2, expiring_unprotected = 1, expired = 1, unknown = 0 }, report.totals)
      assert.are.same({}, report.incomplete)
      assert.matches('"incomplete":[]', r.stdout, 1, true)
      assert.is_nil(report.fixes)
      for _, d in ipairs(report.devices) do
        assert.are.same(WANT[d.productNo], { d.verdict, d.days_left }, d.productNo)
        assert.are.equal("3049040650094403584", text(d.planId))
        assert.are.equal("9", text(d.productId))
      end
      -- progress: one plain line per device
      assert.are.equal(4, #lines_of(r.stderr), r.stderr)
      assert.are.equal(0, changes())
    end)

    it("as a table and as CSV, with the summary on stderr", function()
      local r = audit({ "--format", "table" })
      assert.are.equal(0, r.code, r.stderr)
      local lines = lines_of(r.stdout)
      assert.are.equal(5, #lines)
      assert.matches("^productNo +productId +product +plan +planId +expiry +days_left +auto_renew +verdict +fix +error$",
        lines[1])
      local soon
      for _, l in ipairs(lines) do if l:find("CLI-AUDIT-SOON", 1, true) then soon = l end end
      assert.matches("^CLI%-AUDIT%-SOON +9 .* 3049040650094403584 +2026%-03%-15 +14 +false +expiring_unprotected$", soon)
      local err_lines = lines_of(r.stderr)
      assert.are.equal(5, #err_lines, r.stderr) -- 4 progress lines, then the summary
      assert.are.equal("audit: 4 devices on 2026-03-01, expiring within 30 days: ok 2, expiring_unprotected 1, "
        .. "expired 1, unknown 0", err_lines[5])

      r = audit({ "--format", "csv", "--quiet" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("", r.stderr)
      lines = lines_of((r.stdout:gsub("\r\n", "\n")))
      assert.are.equal(5, #lines)
      assert.are.equal("productNo,productId,product,plan,planId,expiry,days_left,auto_renew,verdict,fix,error", lines[1])
      local found = false
      for _, l in ipairs(lines) do
        if l:match("^CLI%-AUDIT%-GONE,9,.*,3049040650094403584,2026%-02%-01,%-28,false,expired,,$") then found = true end
      end
      assert.is_true(found, r.stdout)
    end)

    it("--fix is a dry run: would_enable, no POST", function()
      local r = audit({ "--fix" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(0, changes())
      local report = json(r)
      assert.are.same({ would_enable = 1, enabled = 0, failed = 0 }, report.fixes)
      for _, d in ipairs(report.devices) do
        assert.are.equal(d.productNo == "CLI-AUDIT-SOON" and "would_enable" or nil, d.fix, d.productNo)
      end
      assert.is_false(portal:state().devices["CLI-AUDIT-SOON"].autoRenew)
    end)

    it("--fix --commit enables auto-renewal on the unprotected device only", function()
      local r = audit({ "--fix", "--commit", "--format", "table" })
      assert.are.equal(0, r.code, r.stderr)
      local n, bodies = requests("POST", ACTIVE_PATH)
      assert.are.equal(1, n)
      assert.matches('"productNo":"CLI-AUDIT-SOON"', bodies[1], 1, true)
      assert.is_true(portal:state().devices["CLI-AUDIT-SOON"].autoRenew)
      assert.matches("; fix: would_enable 0, enabled 1, failed 0\n", r.stderr, 1, true)
    end)

    it("a device whose details fail is unknown, with the error: exit 1", function()
      portal:fault { match = { path = DETAIL_PATH }, status = 400, code = "detail_refused" }
      local r = audit({ "--concurrency", "1" })
      assert.are.equal(1, r.code, r.stderr)
      local report = json(r)
      assert.are.equal(1, report.totals.unknown)
      for _, d in ipairs(report.devices) do
        if d.verdict == "unknown" then assert.are.same({ "api", "detail_refused" }, { d.err.kind, d.err.code }) end
      end
    end)

    it("`audit --within 30` on the seed: the right verdict for every seed device", function()
      -- The portal's today (its seed expiries count from it), so midnight cannot come between.
      local today = portal:state().today
      local r = run({ "audit", "--within", "30", "--today", today, "--format", "table" })
      assert.are.equal(1, r.code, r.stderr) -- the seed has a device without an expiry date
      local verdicts = {}
      for i, line in ipairs(lines_of(r.stdout)) do
        local no = line:match("^(%S+)")
        if i > 1 and not no:match("^CLI%-AUDIT") then -- the header; this describe's own devices
          verdicts[no] = line:match(" (ok)$") or line:match(" (expiring_unprotected)$")
            or line:match(" (expired)$") or line:match(" (unknown) ")
        end
      end
      assert.are.same({
        ["3651E0529415"] = "ok",                      -- 12 days, auto-renewal on
        ["3632E0965333"] = "expiring_unprotected",    -- 20 days, off
        ["3076913644890832896"] = "expired",          -- 5 days ago
        ["3651E0529416"] = "ok",                      -- 200 days
        ["3632E0965334"] = "expiring_unprotected",    -- 30 days: the boundary counts
        ["1369A2021101"] = "unknown",                 -- no expiry date
      }, verdicts)
    end)

    it("options are checked before anything is sent", function()
      assert_usage(audit({ "--commit" }), "--commit goes with --fix")
      assert_usage(run({ "audit", "--within", "soon" }), "--within takes a whole number from 0 to 3650, got 'soon'")
      assert_usage(run({ "audit", "--today", "yesterday" }), "--today takes a date YYYY-MM-DD, got 'yesterday'")
      assert_usage(run({ "audit", "--product", "nine" }), "--product must be digits, got 'nine'")
      assert.are.equal(0, #portal:requests())
    end)
  end)

  describe("installed by luarocks #external", function()
    -- For the runtime under test, as spec/01 builds it: LuaJIT is LuaRocks' 5.1 with its own
    -- interpreter and headers.
    local abi = helpers.RUNTIME == "luajit" and "5.1" or helpers.RUNTIME
    local vars = helpers.RUNTIME == "luajit" and " LUA=/usr/bin/luajit LUA_INCDIR=/usr/include/luajit-2.1" or ""

    it("is a command in the tree's bin/ that finds the rock's module from anywhere", function()
      local tmp = helpers.run("mktemp -d -t yeastar-cli-rock.XXXXXX")
      assert.truthy(tmp:find("yeastar-cli-rock.", 1, true))
      local ok, err = pcall(function()
        -- From a copy of the sources: the checkout's build/ belongs to the other runs.
        local out, code = helpers.run("mkdir " .. q(tmp .. "/src") .. " && tar -cf - --exclude=./.git "
          .. "--exclude=./build --exclude='./build-*' . | tar -xf - -C " .. q(tmp .. "/src") .. " && cd "
          .. q(tmp .. "/src") .. " && luarocks --lua-version=" .. abi .. " make --tree " .. q(tmp .. "/tree") .. vars)
        assert.are.equal(0, code, out)
        local cli = tmp .. "/tree/bin/yeastar-partner"
        local r = run({}, { command = q(cli) .. " status 3651E0529415 12", cwd = tmp, env = { LUA_CPATH = false } })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.equal('{"autoRenew":true,"productId":12,"productNo":"3651E0529415"}\n', r.stdout)
        r = run({}, { command = q(cli) .. " audit --help", cwd = tmp, env = { LUA_CPATH = false } })
        assert.are.equal(0, r.code, r.stderr)
        assert.matches("^usage: yeastar%-partner audit ", r.stdout)
      end)
      os.execute("rm -rf -- " .. q(tmp))
      assert(ok, err)
    end)
  end)

  describe("on a terminal", function()
    -- util-linux's script(1) gives the CLI a pseudo-terminal for stdout and stderr.
    local has_script = select(2, helpers.run("command -v script")) == 0

    it("prints a table by default and progress as one live line", function()
      if not has_script then return pending("script(1) is not installed") end
      local r = run({ "ensure-auto-renewal", "examples/devices.csv", "--dry-run" }, {
        env = { TERM = "xterm" },
        -- Under `make memcheck` the CLI keeps the ASan runtime; script(1) itself, which leaks
        -- by LeakSanitizer's count, runs without it.
        shell = function(line)
          local preload = os.getenv("LD_PRELOAD")
          return "env -u LD_PRELOAD script -qec " .. q("env TERM=xterm "
            .. (preload and ("LD_PRELOAD=" .. q(preload) .. " ") or "") .. line) .. " /dev/null"
        end,
      })
      assert.are.equal(1, r.code, r.stdout)
      local out = r.stdout:gsub("\r\n", "\n")
      assert.matches("\r[7/7] ", out, 1, true)
      assert.matches("\27[K", out, 1, true)
      assert.matches("\nproductNo +productId +planOrServiceId +outcome +error\n", out)
      assert.matches("\nensure-auto-renewal: 7 devices (dry run: nothing was changed)", out, 1, true)
    end)
  end)
end)
