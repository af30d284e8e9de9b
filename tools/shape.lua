-- shape.lua: the notation of result shapes in src/endpoints.c (see endpoints.h): parse it,
-- print it, follow a member path through it (and parameters' `from`), check a result against it.
-- Used by gen-reference.lua, gen-luals.lua and spec/17-docs_spec.lua; portable Lua 5.1-5.4.
local M = {}

M.SCALARS = { string = true, integer = true, number = true, boolean = true, null = true, id = true }

-- Node kinds: {kind = "scalar", name}, {kind = "array", of}, {kind = "union", options},
-- {kind = "object", members = {{name, optional, type}}, open}; an object without members is open.
local function tokens(text)
  local list, i = {}, 1
  while i <= #text do
    local s, e = text:find("^%s+", i)
    if s then
      i = e + 1
    elseif text:sub(i, i + 2) == "..." then
      list[#list + 1], i = "...", i + 3
    elseif text:find("^[%a_]", i) then
      s, e = text:find("^[%w_]+", i)
      list[#list + 1], i = text:sub(s, e), e + 1
    elseif text:find("^[{}%[%]:,?|]", i) then
      list[#list + 1], i = text:sub(i, i), i + 1
    else
      error(("shape: unexpected %q in %s"):format(text:sub(i, i), text), 0)
    end
  end
  return list
end

function M.parse(text)
  local list, pos = tokens(text), 1
  local function fail(what)
    error(("shape: expected %s at token %d (%s) in %s"):format(what, pos, tostring(list[pos]), text), 0)
  end
  local function take(tok)
    if list[pos] ~= tok then fail("'" .. tok .. "'") end
    pos = pos + 1
  end
  local parse_type
  local function parse_object()
    take("{")
    local node = { kind = "object", members = {}, open = false }
    local seen = {}
    while list[pos] ~= "}" do
      if list[pos] == "..." then
        node.open, pos = true, pos + 1
        if list[pos] ~= "}" then fail("'}' after '...'") end
        break
      end
      local name = list[pos]
      if not (name and name:find("^[%a_]")) then fail("a member name") end
      if seen[name] then fail("a member not already listed") end
      seen[name], pos = true, pos + 1
      local optional = list[pos] == "?"
      if optional then pos = pos + 1 end
      take(":")
      node.members[#node.members + 1] = { name = name, optional = optional, type = parse_type() }
      if list[pos] ~= "}" then take(",") end
    end
    take("}")
    if #node.members == 0 then node.open = true end
    return node
  end
  local function parse_single()
    local tok = list[pos]
    if tok == "{" then return parse_object() end
    if tok == "[" then
      pos = pos + 1
      local of = parse_type()
      take("]")
      return { kind = "array", of = of }
    end
    if not M.SCALARS[tok] then fail("a type (" .. "{, [ or a scalar name)") end
    pos = pos + 1
    return { kind = "scalar", name = tok }
  end
  function parse_type()
    local first = parse_single()
    if list[pos] ~= "|" then return first end
    local node = { kind = "union", options = { first } }
    while list[pos] == "|" do
      pos = pos + 1
      node.options[#node.options + 1] = parse_single()
    end
    return node
  end
  local node = parse_type()
  if pos <= #list then fail("the end") end
  return node
end

-- One line, canonical spacing.
function M.format(node)
  if node.kind == "scalar" then return node.name end
  if node.kind == "array" then return "[" .. M.format(node.of) .. "]" end
  if node.kind == "union" then
    local parts = {}
    for i, o in ipairs(node.options) do parts[i] = M.format(o) end
    return table.concat(parts, "|")
  end
  local parts = {}
  for i, m in ipairs(node.members) do
    parts[i] = m.name .. (m.optional and "?" or "") .. ": " .. M.format(m.type)
  end
  if node.open then parts[#parts + 1] = "..." end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- Several lines where one would pass `width`: an object's members filled into indented lines,
-- a member that needs lines of its own on them. `column`: where the first line starts.
function M.pretty(node, width, indent, column)
  indent = indent or 0
  local line = M.format(node)
  if (column or indent) + #line <= width then return line end
  if node.kind == "array" then
    return "[" .. M.pretty(node.of, width - 1, indent, (column or indent) + 1) .. "]"
  end
  if node.kind ~= "object" or #node.members == 0 then return line end
  local pad = (" "):rep(indent + 2)
  local out, current = { "{" }, nil
  local function add(item)
    if current and not item:find("\n") and #current + 1 + #item <= width then
      current = current .. " " .. item
    else
      if current then out[#out + 1] = current end
      current = pad .. item
      if item:find("\n") then out[#out + 1], current = current, nil end
    end
  end
  for _, m in ipairs(node.members) do
    local head = m.name .. (m.optional and "?" or "") .. ": "
    add(head .. M.pretty(m.type, width - 1, indent + 2, #pad + #head) .. ",")
  end
  if node.open then add("...") end
  if current then out[#out + 1] = current end
  out[#out + 1] = (" "):rep(indent) .. "}"
  return table.concat(out, "\n")
end

-- The node reached by a member path such as "planList[].pricingPlanId" or "[].productId".
function M.resolve(node, path)
  local rest = path
  while rest ~= "" do
    local step
    if rest:sub(1, 2) == "[]" then
      if node.kind ~= "array" then return nil end
      node, rest = node.of, rest:sub(3)
    else
      step, rest = rest:match("^%.?([%a_][%w_]*)(.*)$")
      if not step or node.kind ~= "object" then return nil end
      local found
      for _, m in ipairs(node.members) do
        if m.name == step then found = m.type end
      end
      if not found then return nil end
      node = found
    end
  end
  return node
end

-- A parameter's `from` ("method path or method path"), as {{method, path}, ...}.
function M.sources(from)
  local list = {}
  for alternative in (from .. " or "):gmatch("(.-) or ") do
    local method, path = alternative:match("^(%S+) (%S+)$")
    assert(method, "from: expected 'method path' in " .. from)
    list[#list + 1] = { method = method, path = path }
  end
  return list
end

-- The same in Markdown: "`plans_and_services` → `planList[].planId` or `serviceList[].serviceId`".
function M.render_from(from)
  local out, last = {}, nil
  for _, s in ipairs(M.sources(from)) do
    out[#out + 1] = (s.method == last and "" or "`" .. s.method .. "` → ") .. "`" .. s.path .. "`"
    last = s.method
  end
  return table.concat(out, " or ")
end

-- Checks a decoded result against a node: true, or nil and "path: what is wrong". `json` gives
-- the module's markers: {null = partner.null, array_mt = partner.array_mt}.
function M.check(node, value, json, path)
  path = path or "result"
  local function is_array(v) return type(v) == "table" and getmetatable(v) == json.array_mt end
  if node.kind == "union" then
    for _, o in ipairs(node.options) do
      if M.check(o, value, json, path) then return true end
    end
    return nil, ("%s: %s is not %s"):format(path, tostring(value), M.format(node))
  end
  local ok
  if node.kind == "scalar" then
    local n = node.name
    local integral = type(value) == "number" and value % 1 == 0
    ok = (n == "string" and type(value) == "string") or (n == "number" and type(value) == "number")
      or (n == "boolean" and type(value) == "boolean") or (n == "null" and value == json.null)
      or (n == "integer" and integral)
      or (n == "id" and (integral or (type(value) == "string" and value:find("^%-?%d+$") ~= nil)))
  elseif node.kind == "array" then
    ok = is_array(value)
    if ok then
      for i, v in ipairs(value) do
        local good, why = M.check(node.of, v, json, path .. "[" .. i .. "]")
        if not good then return nil, why end
      end
    end
  else
    ok = type(value) == "table" and not is_array(value)
    if ok then
      local known = {}
      for _, m in ipairs(node.members) do
        known[m.name] = true
        local v = value[m.name]
        if v == nil then
          if not m.optional then return nil, ("%s.%s: missing"):format(path, m.name) end
        else
          local good, why = M.check(m.type, v, json, path .. "." .. m.name)
          if not good then return nil, why end
        end
      end
      if not node.open then
        for k in pairs(value) do
          if not known[k] then return nil, ("%s.%s: not in the shape"):format(path, tostring(k)) end
        end
      end
    end
  end
  if ok then return true end
  return nil, ("%s: %s is not %s"):format(path, type(value), M.format(node))
end

return M
