-- spec/07-examples_spec.lua: runs every script in examples/ as a child process against a fake
-- portal and checks exit codes, stdout, stderr and what reached the portal.
-- Owns only the examples; the module's own behaviour is pinned by the other specs.
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"
local q = helpers.shell_quote

-- The runtime under test; each example puts build/<runtime>/ first on its cpath itself.
local LUA = helpers.LUA
-- Unset for every run, so nothing of whoever runs busted leaks in: every variable that
-- partner.from_env reads, and the proxy variables libcurl reads.
local ENV_NAMES = { "https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY",
                    "no_proxy", "NO_PROXY" }
for _, v in ipairs(partner.env_variables) do ENV_NAMES[#ENV_NAMES + 1] = v.name end
local REQUIRED = { "YEASTAR_CLIENT_ID", "YEASTAR_CLIENT_SECRET", "YEASTAR_BASE_URL" }
local SCRIPTS = { "renew_remote_management.lua", "ensure_auto_renewal.lua", "renewal_info.lua", "demo.lua" }
-- What each script's --help must list besides the environment: its options and arguments.
local HELP_ITEMS = {
  ["renew_remote_management.lua"] = { "--commit", "--po NUMBER", "--billing-id ID", "--help" },
  ["ensure_auto_renewal.lua"] = { "--dry-run", "--concurrency N", "devices.csv", "--help" },
  ["renewal_info.lua"] = { "pricingServiceId", "productNo", "productId", "--help" },
  ["demo.lua"] = { "--help" },
}
local SECRET = "examples-spec-secret-7c1e94b2"

-- Seed 002's request body, compacted: what the client sends (and the dry run prints).
local SEED_002_BODY = ([[{
  "operationType": "renew_plan",
  "productId": 15,
  "billingId": 3197218168379846218,
  "serviceList": [
    {
      "serviceType": "plan",
      "serviceId": 3049036224189325312,
      "purchaseType": "renew",
      "billingModel": "recurring",
      "billingCycle": "annually",
      "multiCycle": 1
    }
  ]
}]]):gsub("%s+", "")

local SAVE_PATH = "/order/openapi/order/v1/save"
local ACTIVE_PATH = "/product/openapi/instance_subscription/v1/active"
-- The seed devices of fakeportal/portal.py whose auto-renewal starts off.
local OFF_DEVICES = { "3632E0965333", "3076913644890832896", "3651E0529416", "3632E0965334" }
local ON_DEVICES = { "3651E0529415", "1369A2021101" }

describe("examples #external", function()
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

  -- Runs `<LUA> examples/<script> args...` with only the portal's four variables set (none
  -- inherited from whoever runs busted), TERM unset and stdin empty.
  -- opts.env overrides or adds variables; opts.unset leaves the named ones out.
  local function run(script, args, opts)
    opts = opts or {}
    local env = {
      YEASTAR_BASE_URL = portal.base_url, YEASTAR_CA_FILE = portal.ca_file,
      YEASTAR_CLIENT_ID = portal.client_id, YEASTAR_CLIENT_SECRET = portal.client_secret,
    }
    for k, v in pairs(opts.env or {}) do env[k] = v end
    for _, k in ipairs(opts.unset or {}) do env[k] = nil end
    local cmd = { "env", "-u TERM" }
    for _, k in ipairs(ENV_NAMES) do cmd[#cmd + 1] = "-u " .. k end
    local names = {}
    for k in pairs(env) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do cmd[#cmd + 1] = k .. "=" .. q(env[k]) end
    cmd[#cmd + 1] = LUA .. " " .. q("examples/" .. script)
    for _, a in ipairs(args or {}) do cmd[#cmd + 1] = q(a) end
    local out_file, err_file = os.tmpname(), os.tmpname()
    local line = table.concat(cmd, " ") .. " </dev/null >" .. q(out_file) .. " 2>" .. q(err_file)
    local _, code = helpers.run(line) -- the shell's $?: 128 + signal if one killed it
    local r = { code = code,
                stdout = helpers.read_file(out_file) or "", stderr = helpers.read_file(err_file) or "" }
    os.remove(out_file)
    os.remove(err_file)
    -- Whatever happened, the secret must never be printed.
    assert.is_nil((r.stdout .. r.stderr):find(portal.client_secret, 1, true),
      "the client secret appears in the output of " .. script)
    return r
  end

  local function requests_to(method, path)
    local n, bodies = 0, {}
    for _, r in ipairs(portal:requests()) do
      if r.method == method and r.path == path then
        n = n + 1
        bodies[n] = r.body
      end
    end
    return n, bodies
  end

  local function has_line(text, wanted)
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
      if line == wanted then return true end
    end
    return false
  end

  -- The one notice every example writes first on stderr: which portal it talks to.
  local function assert_notice(script, r, base_url)
    local first = r.stderr:match("^[^\n]*")
    local prefix = script:gsub("%.lua$", "") .. ": talking to " .. (base_url or portal.base_url) .. " ("
    assert.are.equal(prefix, first:sub(1, #prefix), r.stderr)
    local _, notices = r.stderr:gsub(": talking to ", "")
    assert.are.equal(1, notices, r.stderr)
  end

  describe("renew_remote_management.lua", function()
    it("dry run by default: prints seed 002's exact body and orders nothing", function()
      local r = run("renew_remote_management.lua")
      assert.are.equal(0, r.code, r.stderr)
      assert_notice("renew_remote_management.lua", r)
      assert.is_true(has_line(r.stdout, SEED_002_BODY), r.stdout)
      assert.is_true(has_line(r.stdout, "POST " .. SAVE_PATH), r.stdout)
      assert.matches("Dry run: nothing was ordered", r.stdout, 1, true)
      assert.are.equal(0, (requests_to("POST", SAVE_PATH)))
      assert.are.equal(0, #portal:state().orders)
    end)

    it("--commit places exactly one order, the body shown, and prints orderNo and status", function()
      local r = run("renew_remote_management.lua", { "--commit" })
      assert.are.equal(0, r.code, r.stderr)
      assert.is_true(has_line(r.stdout, SEED_002_BODY), r.stdout)
      assert.matches("orderNo:%s+MK3400814131142238208", r.stdout)
      assert.matches("orderStatus:%s+succeed", r.stdout)
      local n, bodies = requests_to("POST", SAVE_PATH)
      assert.are.equal(1, n)
      assert.are.equal(SEED_002_BODY, bodies[1])
      assert.are.equal(1, #portal:state().orders)
    end)

    it("--po puts the PO number into the order", function()
      local r = run("renew_remote_management.lua", { "--commit", "--po", "PO-SPEC-7" })
      assert.are.equal(0, r.code, r.stderr)
      local orders = portal:state().orders
      assert.are.equal(1, #orders)
      assert.are.equal("PO-SPEC-7", orders[1].poNumber)
      assert.matches('"poNumber":"PO-SPEC-7"', r.stdout, 1, true)
    end)

    it("re-running --commit with the same --po orders nothing the second time", function()
      local first = run("renew_remote_management.lua", { "--commit", "--po", "PO-TWICE-1" })
      assert.are.equal(0, first.code, first.stderr)
      local again = run("renew_remote_management.lua", { "--commit", "--po", "PO-TWICE-1" })
      assert.are.equal(0, again.code, again.stderr)
      assert.matches("Existing order for PO PO-TWICE-1", again.stdout, 1, true)
      assert.are.equal(1, #portal:state().orders)
      assert.are.equal(1, helpers.count(portal, SAVE_PATH)) -- one order POST across both runs
    end)

    it("a lost answer to --commit is settled from the order list, never by ordering again", function()
      portal:fault { match = { method = "POST", path = SAVE_PATH }, process = true, drop = true }
      local r = run("renew_remote_management.lua", { "--commit", "--po", "PO-LOST-1" })
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("ambiguous", r.stderr, 1, true)
      assert.matches("Order found in the order list: orderNo MK3400814131142238208", r.stdout, 1, true)
      assert.are.equal(1, (requests_to("POST", SAVE_PATH)))
      assert.are.equal(1, #portal:state().orders)
    end)

    it("with two billing contacts: asks for --billing-id, orders nothing; with it, orders", function()
      portal:config { billing_contacts = 2 }
      local r = run("renew_remote_management.lua", { "--commit" })
      assert.are.equal(1, r.code)
      assert.matches("billing_contact_required", r.stderr, 1, true)
      assert.matches("--billing-id", r.stderr, 1, true)
      assert.are.equal(0, (requests_to("POST", SAVE_PATH)))

      r = run("renew_remote_management.lua", { "--commit", "--billing-id", "3197218168379846219" })
      assert.are.equal(0, r.code, r.stderr)
      local n, bodies = requests_to("POST", SAVE_PATH)
      assert.are.equal(1, n)
      assert.matches('"billingId":3197218168379846219,', bodies[1], 1, true)
    end)

    it("an unknown argument is a usage error (exit 2) and sends nothing", function()
      local r = run("renew_remote_management.lua", { "--comit" })
      assert.are.equal(2, r.code)
      assert.matches("unknown argument '--comit'", r.stderr, 1, true)
      assert.are.equal(0, #portal:requests())
    end)
  end)

  describe("ensure_auto_renewal.lua", function()
    it("enables auto-renewal where it is off, reports the unknown device, exits 1", function()
      local r = run("ensure_auto_renewal.lua", { "examples/devices.csv" })
      assert.are.equal(1, r.code, r.stderr)
      assert.matches("already_on%s+2\n", r.stdout)
      assert.matches("enabled%s+4\n", r.stdout)
      assert.matches("would_enable%s+0\n", r.stdout)
      assert.matches("failed%s+1\n", r.stdout)
      assert_notice("ensure_auto_renewal.lua", r)
      assert.matches("Failed devices (1):\n  3651E0999999 (product 12): "
        .. "yeastar.partner: auto_renewal_status: api error product_not_found", r.stdout, 1, true)
      -- Progress on stderr, one plain line per device when stderr is not a terminal.
      assert.matches("[7/7] ", r.stderr, 1, true)
      assert.is_nil(r.stderr:find("\r", 1, true))
      local devices = portal:state().devices
      for _, no in ipairs(OFF_DEVICES) do assert.is_true(devices[no].autoRenew, no) end
      for _, no in ipairs(ON_DEVICES) do assert.is_true(devices[no].autoRenew, no) end
      assert.are.equal(4, (requests_to("POST", ACTIVE_PATH)))
    end)

    it("--dry-run changes nothing and says which devices would be enabled", function()
      local r = run("ensure_auto_renewal.lua", { "--dry-run", "--concurrency", "2", "examples/devices.csv" })
      assert.are.equal(1, r.code, r.stderr)
      assert.matches("would_enable%s+4\n", r.stdout)
      assert.matches("enabled%s+0\n", r.stdout)
      assert.matches("failed%s+1\n", r.stdout)
      assert.matches("dry run", r.stdout, 1, true)
      assert.are.equal(0, (requests_to("POST", ACTIVE_PATH)))
      local devices = portal:state().devices
      for _, no in ipairs(OFF_DEVICES) do assert.is_false(devices[no].autoRenew, no) end
    end)

    it("exits 0 when every device is fine", function()
      local csv = os.tmpname()
      local fh = assert(io.open(csv, "w"))
      fh:write("productId,productNo,planOrServiceId\r\n12,3651E0529416,3049040650094403584\r\n")
      fh:close()
      local r = run("ensure_auto_renewal.lua", { csv })
      os.remove(csv)
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("enabled%s+1\n", r.stdout)
      assert.is_nil(r.stdout:find("Failed devices", 1, true))
      assert.is_true(portal:state().devices["3651E0529416"].autoRenew)
    end)

    it("a malformed CSV is a usage error naming the line, before anything is sent", function()
      local csv = os.tmpname()
      local fh = assert(io.open(csv, "w"))
      fh:write("productNo,productId,planOrServiceId\n", "3651E0529416,12,3049040650094403584\n",
        "3632E0965333,eleven,3048560232537899008\n")
      fh:close()
      local r = run("ensure_auto_renewal.lua", { csv })
      os.remove(csv)
      assert.are.equal(2, r.code)
      assert.matches(":3: bad productId 'eleven'", r.stderr, 1, true)
      assert.are.equal(0, #portal:requests())
    end)

    it("bad options and a missing file are usage errors", function()
      assert.are.equal(2, run("ensure_auto_renewal.lua", { "--concurrency", "0", "examples/devices.csv" }).code)
      assert.are.equal(2, run("ensure_auto_renewal.lua", {}).code)
      local r = run("ensure_auto_renewal.lua", { "no-such-file.csv" })
      assert.are.equal(2, r.code)
      assert.matches("cannot read the CSV file", r.stderr, 1, true)
      assert.are.equal(0, #portal:requests())
    end)
  end)

  describe("renewal_info.lua", function()
    it("prints seed 003's renewal terms", function()
      local r = run("renewal_info.lua")
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("name%s+Hotel PMS Integration\n", r.stdout)
      assert.matches("serviceId%s+3116037397465776128\n", r.stdout)
      assert.matches("pricingServiceId%s+27946\n", r.stdout)
      assert.matches("billing cycles%s+annually\n", r.stdout)
      assert.matches("billing models%s+recurring\n", r.stdout)
      -- Nothing on stderr but the notice naming the portal.
      assert_notice("renewal_info.lua", r)
      assert.are.equal(portal.base_url, r.stderr:match("^renewal_info: talking to (%S+) %([^\n]*%)\n$"), r.stderr)
    end)

    it("an unknown service: the portal's error on stderr, exit 1", function()
      local r = run("renewal_info.lua", { "99999" })
      assert.are.equal(1, r.code)
      assert.matches("renewal_service_info: api error service_not_found (HTTP 404)", r.stderr, 1, true)
    end)

    it("a wrong secret: an auth error, exit 1, and neither secret is printed", function()
      local wrong = "wrong-secret-0f9a33d1"
      local r = run("renewal_info.lua", {}, { env = { YEASTAR_CLIENT_SECRET = wrong } })
      assert.are.equal(1, r.code)
      assert.matches("auth error", r.stderr, 1, true)
      assert.is_nil((r.stdout .. r.stderr):find(wrong, 1, true))
    end)
  end)

  describe("demo.lua", function()
    it("tells the whole story and exits 0", function()
      local r = run("demo.lua")
      assert.are.equal(0, r.code, r.stderr)
      assert_notice("demo.lua", r)
      assert.matches("3651E0529415 (product 12): auto-renewal is ON", r.stdout, 1, true)
      -- The audit runs before the fleet step changes anything: the seeds' verdicts (spec/20
      -- checks each in detail), and --fix only as a dry run.
      local today = portal:state().today
      assert.matches(("Summary on %s: 6 devices: 2 ok, 2 expiring unprotected, 1 expired, 1 unknown.")
        :format(today), r.stdout, 1, true)
      assert.matches("3632E0965334 +11 +Standard Plan +%d%d%d%d%-%d%d%-%d%d +30 OFF +" ..
        "expiring_unprotected %(%-%-fix would enable auto%-renewal%)", r.stdout)
      assert.matches("3076913644890832896  15 +Remote Management Account +%S+ +%-5 OFF +expired", r.stdout)
      assert.matches("1369A2021101 .* unknown %(the details of 1369A2021101 carry no currentPlanExpireDate%)", r.stdout)
      assert.matches("Summary: 7 devices: 2 already on, 4 enabled now, 1 failed.", r.stdout, 1, true)
      assert.matches("Ordered: orderNo MK3400814131142238208, status succeed", r.stdout, 1, true)
      assert.matches("Found it: orderNo MK3400814131142238208", r.stdout, 1, true)
      assert.matches("Done: every step of the renewal story worked.", r.stdout, 1, true)
      assert.are.equal(1, (requests_to("POST", SAVE_PATH)))
      assert.are.equal(#OFF_DEVICES, (requests_to("POST", ACTIVE_PATH))) -- the fleet's, not the audit's
      local state = portal:state()
      assert.matches("^demo%-", state.orders[1].poNumber)
      for _, no in ipairs(OFF_DEVICES) do assert.is_true(state.devices[no].autoRenew, no) end
    end)

    it("refuses a portal that is not on this machine, before connecting", function()
      local r = run("demo.lua", {}, { env = { YEASTAR_BASE_URL = "https://192.0.2.1" } })
      assert.are.equal(2, r.code)
      assert_notice("demo.lua", r, "https://192.0.2.1")
      assert.matches("only talks to a portal on this machine", r.stderr, 1, true)
      assert.are.equal("", r.stdout)
    end)

    it("takes no arguments: an unknown one is a usage error, nothing sent", function()
      local r = run("demo.lua", { "--fast" })
      assert.are.equal(2, r.code)
      assert.matches("unknown argument '--fast'", r.stderr, 1, true)
      assert.are.equal(0, #portal:requests())
    end)
  end)

  describe("the environment (partner.from_env)", function()
    for _, script in ipairs(SCRIPTS) do
      local args = script == "ensure_auto_renewal.lua" and { "examples/devices.csv" } or {}

      it(script .. ": a missing variable is named, exit 2, nothing sent", function()
        local r = run(script, args, { unset = { "YEASTAR_CLIENT_SECRET" } })
        assert.are.equal(2, r.code)
        assert.matches("missing environment variable YEASTAR_CLIENT_SECRET (", r.stderr, 1, true)
        assert.are.equal("", r.stdout)
        assert.are.equal(0, #portal:requests())
      end)

      it(script .. ": every missing variable in one message; an empty one counts as missing", function()
        local r = run(script, args, { unset = { "YEASTAR_CLIENT_ID", "YEASTAR_BASE_URL" },
                                      env = { YEASTAR_CLIENT_SECRET = "" } })
        assert.are.equal(2, r.code)
        local name = script:gsub("%.lua$", "")
        assert.matches(name .. ": from_env: missing environment variables " .. table.concat(REQUIRED, ", ")
          .. " (YEASTAR_BASE_URL is https://openapi.partner.yeastar.com for the live portal", r.stderr, 1, true)
        local _, n = r.stderr:gsub("missing environment", "")
        assert.are.equal(1, n, r.stderr)
        assert.is_nil(r.stderr:find("talking to", 1, true))
        assert.are.equal("", r.stdout)
        assert.are.equal(0, #portal:requests())
      end)

      it(script .. ": a bad variable is named, exit 2, nothing sent", function()
        local r = run(script, args, { env = { YEASTAR_MAX_RETRIES = "lots" } })
        assert.are.equal(2, r.code)
        assert.matches("from_env: YEASTAR_MAX_RETRIES must be a whole number such as 2, got 'lots'", r.stderr, 1, true)
        assert.are.equal(0, #portal:requests())
      end)

      it(script .. ": --help lists its options and every variable, exit 0, no environment needed", function()
        local unset = {}
        for _, v in ipairs(partner.env_variables) do unset[#unset + 1] = v.name end
        local r = run(script, { "--help" }, { unset = unset })
        assert.are.equal(0, r.code, r.stderr)
        assert.are.equal("", r.stderr)
        assert.matches("^usage: ", r.stdout)
        for _, item in ipairs(HELP_ITEMS[script]) do assert.matches(item, r.stdout, 1, true) end
        for _, v in ipairs(partner.env_variables) do
          assert.matches("\n  " .. v.name .. " +" .. v.about:gsub("%p", "%%%0") .. "\n", r.stdout)
        end
        assert.matches("Exit status: 0", r.stdout, 1, true)
        assert.are.same(r, run(script, { "-h" }, { unset = unset }))
        assert.are.equal(0, #portal:requests())
      end)
    end

    it("the optional variables reach the client: a dead YEASTAR_PROXY fails the call, naming the proxy", function()
      local r = run("renewal_info.lua", {}, {
        env = { YEASTAR_PROXY = "http://127.0.0.1:" .. helpers.free_port(), YEASTAR_MAX_RETRIES = "0" } })
      assert.are.equal(1, r.code)
      assert_notice("renewal_info.lua", r)
      assert.matches("network error connect_failed", r.stderr, 1, true)
      assert.matches("cannot reach the proxy", r.stderr, 1, true)
      assert.are.equal(0, #portal:requests())
    end)
  end)
end)
