-- examples/openresty/token_store.lua: a token_store for yeastar.partner backed by an nginx shared
-- dictionary, so every worker of an nginx uses one access token instead of logging in each.
local partner = require "yeastar.partner"

local M = {}

-- token_store.shared_dict("yeastar_tokens" [, key]) for partner.new{token_store = ...}; the
-- dictionary is declared with `lua_shared_dict yeastar_tokens 1m;`. The record holds tokens:
-- the dictionary lives in nginx's memory only, never on disk.
function M.shared_dict(name, key)
  local dict = ngx.shared[name]
  if not dict then error("token_store: no lua_shared_dict named " .. tostring(name), 2) end
  key = key or "yeastar.partner.token"
  return {
    load = function()
      local text = dict:get(key)
      if not text then return nil end
      return partner.json_decode(text)
    end,
    save = function(record)
      local ok, err = dict:set(key, partner.json_encode(record))
      if not ok then return nil, "shared dict: " .. tostring(err) end
      return true
    end,
  }
end

return M
