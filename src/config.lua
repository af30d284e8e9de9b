-- config.lua: partner.from_env([overrides]), a client configured from YEASTAR_* environment
-- variables, the one way the Quick start, the examples and command-line tools build theirs; and
-- partner.env_variables, the list it reads (for --help texts). Embedded in partner.so.
local partner = ...

-- Read in this order; messages list missing variables in this order too. `about` is the --help
-- text. An empty variable counts as unset.
local VARIABLES = {
  { name = "YEASTAR_CLIENT_ID", option = "client_id", required = true,
    about = "the API client ID (required; Partner Portal: System > API)" },
  { name = "YEASTAR_CLIENT_SECRET", option = "client_secret", required = true,
    about = "the API client secret (required; never printed)" },
  { name = "YEASTAR_BASE_URL", option = "base_url", required = true,
    about = "the portal (required), live: https://openapi.partner.yeastar.com" },
  { name = "YEASTAR_CA_FILE", option = "ca_file",
    about = "a CA bundle to trust instead of the system's (optional)" },
  { name = "YEASTAR_PROXY", option = "proxy",
    about = "an HTTP(S) proxy, http://host:port (optional)" },
  { name = "YEASTAR_TIMEOUT", option = "timeout", number = "seconds",
    about = "seconds for one exchange (optional, default 30)" },
  { name = "YEASTAR_DEADLINE", option = "deadline", number = "seconds",
    about = "seconds for one call, retries included (default 120)" },
  { name = "YEASTAR_MAX_RETRIES", option = "max_retries", number = "count",
    about = "retries of a failed call, 0-10 (optional, default 2)" },
  { name = "YEASTAR_TOKEN_FILE", option = "token_store", token_file = true,
    about = "a file keeping the access token between runs (optional)" },
}

-- What to do about missing variables: the base URL has no default, so that which portal gets an
-- order is always a deliberate choice.
local HINT_BASE_URL = "YEASTAR_BASE_URL is https://openapi.partner.yeastar.com for the live "
  .. "portal; `make fake-portal` prints the export lines of a fake one"
local HINT_CREDENTIALS = "the Partner Portal's System > API page gives the client ID and secret; "
  .. "`make fake-portal` prints the export lines of a fake portal"

-- A value fit for a message: printable, short, and never the secret (someone may have pasted it
-- into the wrong variable).
local function shown(value, secret)
  if secret and #secret > 0 and value:find(secret, 1, true) then return "(hidden)" end
  local s = value:gsub("[%c\128-\255]", "?")
  if #s > 40 then s = s:sub(1, 40) .. "..." end
  return "'" .. s .. "'"
end

local function parse_number(v, kind)
  if kind == "count" then
    return v:match("^%d+$") and tonumber(v) or nil
  end
  if v:match("^%d+%.?%d*$") or v:match("^%.%d+$") then return tonumber(v) end
  return nil
end

local function from_env(overrides)
  if overrides ~= nil and type(overrides) ~= "table" then
    error(("from_env: overrides must be a table of partner.new options (got %s)")
      :format(type(overrides)), 2)
  end
  local opts, origin = {}, {} -- origin[option] = the variable it came from
  for k, v in pairs(overrides or {}) do opts[k] = v end -- the caller's table stays untouched

  local values, missing = {}, {}
  for _, var in ipairs(VARIABLES) do
    if opts[var.option] == false then
      opts[var.option] = nil -- `false`: leave this variable unread and the option unset
    elseif opts[var.option] == nil then
      local v = os.getenv(var.name)
      if v ~= nil and v ~= "" then
        values[var] = v
      elseif var.required then
        missing[#missing + 1] = var.name
      end
    end
  end
  if #missing > 0 then
    local list = table.concat(missing, ", ")
    error(("from_env: missing environment variable%s %s (%s)"):format(#missing > 1 and "s" or "",
      list, list:find("YEASTAR_BASE_URL", 1, true) and HINT_BASE_URL or HINT_CREDENTIALS), 0)
  end

  local secret = opts.client_secret
  if type(secret) ~= "string" then secret = values[VARIABLES[2]] end
  for _, var in ipairs(VARIABLES) do
    local v = values[var]
    if v ~= nil then
      if var.number then
        local n = parse_number(v, var.number)
        if not n then
          error(("from_env: %s must be %s, got %s"):format(var.name,
            var.number == "count" and "a whole number such as 2" or "a number of seconds such as 30 or 2.5",
            shown(v, secret)), 0)
        end
        v = n
      elseif var.token_file then
        local ok, store = pcall(partner.file_token_store, v)
        if not ok then
          error(("from_env: %s: %s"):format(var.name, (tostring(store):gsub("^[^:]*:%d+: ", ""))), 0)
        end
        v = store
      end
      opts[var.option] = v
      origin[var.option] = var.name
    end
  end

  local ok, client = pcall(partner.new, opts)
  if not ok then
    -- partner.new names the option; say which variable set it. Its messages never hold a value.
    local message = tostring(client):gsub("^new: ", "")
    local option = message:match("option '([%w_]+)'")
    if option and origin[option] then message = origin[option] .. ": " .. message end
    error("from_env: " .. message, 0)
  end
  return client
end

partner.from_env = from_env

-- A copy per module load: a caller changing it cannot change what from_env reads.
local list = {}
for i, var in ipairs(VARIABLES) do
  list[i] = { name = var.name, option = var.option, required = var.required or false,
              about = var.about }
end
partner.env_variables = list

-- The "Environment" block of a script's --help: one line per variable.
function partner.env_help()
  local lines = { "Environment (read by partner.from_env):" }
  for _, v in ipairs(VARIABLES) do lines[#lines + 1] = ("  %-22s %s"):format(v.name, v.about) end
  return table.concat(lines, "\n")
end
