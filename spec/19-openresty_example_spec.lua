-- spec/19-openresty_example_spec.lua: the README's nginx.conf (examples/openresty/nginx.conf), run
-- as shipped against the fake portal: its fleet location, and one token for both workers.
local helpers = require "spec.helpers"
local nginx = require "spec.nginx"
local cjson = require("cjson").new()

describe("examples/openresty #nginx", function()
  local ok, why = nginx.available()
  if not ok then
    pending("nginx not installed: " .. why)
    return
  end

  local portal, server
  lazy_setup(function()
    portal = helpers.start_portal()
    local root = helpers.run("pwd")
    -- The client reads its settings from the environment, which nginx passes to Lua only for
    -- the variables the config lists with `env`: set them for the nginx process.
    local conf = helpers.read_file("examples/openresty/nginx.conf")
    conf = ("env YEASTAR_CLIENT_ID=%s;\nenv YEASTAR_CLIENT_SECRET=%s;\nenv YEASTAR_BASE_URL=%s;\n")
      :format(portal.client_id, portal.client_secret, portal.base_url)
      .. conf:gsub("\nenv YEASTAR_[%u_]+;", "")
    server = nginx.start {
      conf = conf,
      vars = { MODULE_DIR = root .. "/build/luajit", EXAMPLE_DIR = root .. "/examples/openresty",
               CA_FILE = portal.ca_file },
    }
  end)
  lazy_teardown(function()
    if server then server:stop() end
    if portal then portal:stop() end
  end)

  it("reports the fleet's auto-renewal status as JSON, the seeds' devices in order", function()
    local status, body = server:get("/fleet/auto-renewal")
    assert.equal(200, status, body)
    local report = cjson.decode(body)
    local got = {}
    for i, d in ipairs(report.devices) do got[i] = d.productNo .. "=" .. tostring(d.autoRenew) end
    assert.same({ "3651E0529415=true", "3632E0965333=false", "3076913644890832896=false",
                  "3651E0529416=false", "3632E0965334=false", "1369A2021101=true" }, got)
    assert.equal(6, helpers.count(portal, helpers.STATUS_PATH))
  end)

  it("both workers share one token through the shared dict: one login for 40 requests", function()
    local workers, n = {}, 0
    for _ = 1, 40 do
      local status, body = server:get("/fleet/auto-renewal")
      assert.equal(200, status, body)
      local worker = cjson.decode(body).worker
      if not workers[worker] then workers[worker], n = true, n + 1 end
    end
    assert.equal(1, helpers.count(portal, helpers.TOKEN_PATH))
    -- Both workers must have served: otherwise one login would prove nothing.
    assert.equal(2, n)
  end)
end)
