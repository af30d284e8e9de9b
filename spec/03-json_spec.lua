-- 03-json_spec.lua: the JSON codec through partner.json_decode / partner.json_encode:
-- RFC 8259 conformance (JSONTestSuite-style y_/n_ cases), exact 64-bit IDs, depth limits, UTF-8.
local partner = require("yeastar.partner")
local helpers = require("spec.helpers")
local decode, encode, null = partner.json_decode, partner.json_encode, partner.null
-- Whether Lua numbers have an integer subtype (5.3+); elsewhere every number is a double.
local INTEGERS = helpers.INTEGERS

-- "integer" or "float" where Lua has the subtype. Where every number is a double there is no
-- subtype to tell: "number" (then equal values are equally integral, so == says the rest).
local function numtype(v)
  if INTEGERS then return math.type(v) end
  return type(v) == "number" and "number" or nil
end

-- Deep comparison that also tells integers from floats (1 == 1.0 in Lua, not here).
local function diff(got, want, path)
  path = path or "value"
  if type(got) ~= type(want) then
    return ("%s: %s expected, got %s"):format(path, type(want), type(got))
  end
  if type(want) == "number" then
    if numtype(got) ~= numtype(want) then
      return ("%s: %s expected, got %s"):format(path, numtype(want), numtype(got))
    end
    if got ~= want and not (got ~= got and want ~= want) then
      return ("%s: %.17g expected, got %.17g"):format(path, want, got)
    end
    return nil
  end
  if type(want) ~= "table" then
    if got ~= want then return ("%s: %q expected, got %q"):format(path, tostring(want), tostring(got)) end
    return nil
  end
  for k, v in pairs(want) do
    local d = diff(got[k], v, path .. "[" .. tostring(k) .. "]")
    if d then return d end
  end
  for k in pairs(got) do
    if want[k] == nil then return ("%s: unexpected key %s"):format(path, tostring(k)) end
  end
  return nil
end

local function assert_decodes(json, want)
  local got, err = decode(json)
  assert.is_nil(err)
  local d = diff(got, want)
  assert(d == nil, d)
end

local function assert_rejected(json)
  local n = select("#", decode(json))
  local got, err = decode(json)
  assert.is_nil(got)
  assert.equal(2, n)
  assert.is_string(err)
  assert.truthy(err:find("invalid JSON", 1, true), err)
end

describe("json_decode accepts", function()
  -- Names follow JSONTestSuite's y_ files; texts are inline so the spec stands alone.
  local cases = {
    { "y_array_arraysWithSpaces", "[[]   ]", { {} } },
    { "y_array_empty", "[]", {} },
    { "y_array_empty-string", [[[""] ]], { "" } },
    { "y_array_false", "[false]", { false } },
    { "y_array_heterogeneous", [[[null, 1, "1", {}] ]], { null, 1, "1", {} } },
    { "y_array_null", "[null]", { null } },
    { "y_array_with_1_and_newline", "[1\n]", { 1 } },
    { "y_array_with_leading_space", " [1]", { 1 } },
    { "y_array_with_several_null", "[1,null,null,null,2]", { 1, null, null, null, 2 } },
    { "y_array_with_trailing_space", "[2] ", { 2 } },
    { "y_number", "[123e65]", { 123e65 } },
    { "y_number_0e+1", "[0e+1]", { 0.0 } },
    { "y_number_0e1", "[0e1]", { 0.0 } },
    { "y_number_after_space", "[ 4]", { 4 } },
    { "y_number_double_close_to_zero", "[-0.000000000000000000000000000000000000000000000000000000000000000000000000000001]", { -1e-78 } },
    { "y_number_int_with_exp", "[20e1]", { 200.0 } },
    { "y_number_minus_zero", "[-0]", { 0 } },
    { "y_number_negative_int", "[-123]", { -123 } },
    { "y_number_negative_one", "[-1]", { -1 } },
    { "y_number_negative_zero_float", "[-0.0]", { -0.0 } },
    { "y_number_real_capital_e", "[1E22]", { 1e22 } },
    { "y_number_real_capital_e_neg_exp", "[1E-2]", { 0.01 } },
    { "y_number_real_capital_e_pos_exp", "[1E+2]", { 100.0 } },
    { "y_number_real_exponent", "[123e45]", { 123e45 } },
    { "y_number_real_fraction_exponent", "[123.456e78]", { 123.456e78 } },
    { "y_number_real_neg_exp", "[1e-2]", { 0.01 } },
    { "y_number_real_pos_exponent", "[1e+2]", { 100.0 } },
    { "y_number_simple_int", "[123]", { 123 } },
    { "y_number_simple_real", "[123.456789]", { 123.456789 } },
    { "y_number_long_fraction", "0." .. ("1"):rep(300), 1 / 9 },
    { "y_number_underflow_to_zero", "1e-400", 0.0 },
    { "y_object", [[{"asd":"sdf", "dfg":"fgh"}]], { asd = "sdf", dfg = "fgh" } },
    { "y_object_basic", [[{"asd":"sdf"}]], { asd = "sdf" } },
    { "y_object_duplicated_key", [[{"a":"b","a":"c"}]], { a = "c" } },
    { "y_object_duplicated_key_and_value", [[{"a":"b","a":"b"}]], { a = "b" } },
    { "y_object_empty", "{}", {} },
    { "y_object_empty_key", [[{"":0}]], { [""] = 0 } },
    { "y_object_escaped_null_in_key", [[{"foo\u0000bar": 42}]], { ["foo\0bar"] = 42 } },
    { "y_object_extreme_numbers", [[{ "min": -1.0e+28, "max": 1.0e+28 }]], { min = -1.0e28, max = 1.0e28 } },
    { "y_object_long_strings", [[{"x":[{"id": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}], "id": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}]],
      { x = { { id = ("x"):rep(40) } }, id = ("x"):rep(40) } },
    { "y_object_simple", [[{"a":[]}]], { a = {} } },
    { "y_object_string_unicode", [[{"title":"\u041f\u043e\u043b\u0442\u043e\u0440\u0430 \u0417\u0435\u043c\u043b\u0435\u043a\u043e\u043f\u0430" }]],
      { title = "Полтора Землекопа" } },
    { "y_object_with_newlines", "{\n\"a\": \"b\"\n}", { a = "b" } },
    { "y_string_1_2_3_bytes_UTF-8_sequences", [[["\u0060\u012a\u12AB"] ]], { "\096\196\170\225\138\171" } },
    { "y_string_accepted_surrogate_pair", [[["\uD801\udc37"] ]], { "\240\144\144\183" } },
    { "y_string_accepted_surrogate_pairs", [[["\ud83d\ude39\ud83d\udc8d"] ]], { "\240\159\152\185\240\159\146\141" } },
    { "y_string_allowed_escapes", [[["\"\\\/\b\f\n\r\t"] ]], { "\"\\/\b\f\n\r\t" } },
    { "y_string_backslash_and_u_escaped_zero", [[["\\u0000"] ]], { "\\u0000" } },
    { "y_string_backslash_doublequotes", [[["\""] ]], { '"' } },
    { "y_string_comments", [[["a/*b*/c/*d//e"] ]], { "a/*b*/c/*d//e" } },
    { "y_string_double_escape_a", [[["\\a"] ]], { "\\a" } },
    { "y_string_double_escape_n", [[["\\n"] ]], { "\\n" } },
    { "y_string_escaped_control_character", [[["\u0012"] ]], { "\18" } },
    { "y_string_escaped_noncharacter", [[["\uFFFF"] ]], { "\239\191\191" } },
    { "y_string_in_array", [[["asd"] ]], { "asd" } },
    { "y_string_in_array_with_leading_space", [[[ "asd"] ]], { "asd" } },
    { "y_string_last_surrogates_1_and_2", [[["\uDBFF\uDFFF"] ]], { "\244\143\191\191" } },
    { "y_string_nbsp_uescaped", [[["new\u00A0line"] ]], { "new\194\160line" } },
    { "y_string_nonCharacterInUTF-8_U+10FFFF", '["\244\143\191\191"]', { "\244\143\191\191" } },
    { "y_string_nonCharacterInUTF-8_U+FFFF", '["\239\191\191"]', { "\239\191\191" } },
    { "y_string_null_escape", [[["\u0000"] ]], { "\0" } },
    { "y_string_one-byte-utf-8", [[["\u002c"] ]], { "," } },
    { "y_string_pi", '["\207\128"]', { "\207\128" } },
    { "y_string_reservedCharacterInUTF-8_U+1BFFF", '["\240\155\191\191"]', { "\240\155\191\191" } },
    { "y_string_simple_ascii", [[["asd "] ]], { "asd " } },
    { "y_string_space", [[" "]], " " },
    { "y_string_surrogates_U+1D11E_MUSICAL_SYMBOL_G_CLEF", [[["\uD834\uDd1e"] ]], { "\240\157\132\158" } },
    { "y_string_three-byte-utf-8", [[["\u0821"] ]], { "\224\160\161" } },
    { "y_string_two-byte-utf-8", [[["\u0123"] ]], { "\196\163" } },
    { "y_string_u+2028_line_sep", '["\226\128\168"]', { "\226\128\168" } },
    { "y_string_uEscape", [[["\u0061\u30af\u30EA\u30b9"] ]], { "a\227\130\175\227\131\170\227\130\185" } },
    { "y_string_uescaped_newline", [[["new\u000Aline"] ]], { "new\nline" } },
    { "y_string_unescaped_char_delete", '["\127"]', { "\127" } },
    { "y_string_utf8", '["\226\130\172\240\157\132\158"]', { "\226\130\172\240\157\132\158" } },
    { "y_string_escaped_solidus_and_raw", [[["/\/"] ]], { "//" } },
    { "y_structure_lonely_false", "false", false },
    { "y_structure_lonely_int", "42", 42 },
    { "y_structure_lonely_negative_real", "-0.1", -0.1 },
    { "y_structure_lonely_null", "null", null },
    { "y_structure_lonely_string", [["asd"]], "asd" },
    { "y_structure_lonely_true", "true", true },
    { "y_structure_string_empty", [[""]], "" },
    { "y_structure_trailing_newline", '["a"]\n', { "a" } },
    { "y_structure_true_in_array", "[true]", { true } },
    { "y_structure_whitespace_array", " [] ", {} },
    { "y_structure_all_four_whitespaces", " \t\n\r[ \t\n\r1 \t\n\r, \t\n\r{ \t\n\r\"a\" \t\n\r: \t\n\r2 \t\n\r} \t\n\r] \t\n\r",
      { 1, { a = 2 } } },
    { "y_envelope #integers", [[{"errcode":0,"errmsg":"SUCCESS","data":{"pageNo":1,"total":2,"list":[{"orderId":3197218168379846218,"amount":12.5,"remark":null}]}}]],
      { errcode = 0, errmsg = "SUCCESS", data = { pageNo = 1, total = 2, list = { { orderId = 3197218168379846218, amount = 12.5, remark = null } } } } },
    -- A double cannot hold this ID (it would read ...144): its exact digits come as a string.
    { "y_envelope #doubles", [[{"errcode":0,"errmsg":"SUCCESS","data":{"pageNo":1,"total":2,"list":[{"orderId":3197218168379846218,"amount":12.5,"remark":null}]}}]],
      { errcode = 0, errmsg = "SUCCESS", data = { pageNo = 1, total = 2, list = { { orderId = "3197218168379846218", amount = 12.5, remark = null } } } } },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      assert_decodes(c[2], c[3])
    end)
  end
end)

describe("json_decode rejects", function()
  local cases = {
    { "n_array_1_true_without_comma", "[1 true]" },
    { "n_array_a_invalid_utf8", "[a\229]" },
    { "n_array_colon_instead_of_comma", [[["": 1] ]] },
    { "n_array_comma_after_close", [[[""],]] },
    { "n_array_comma_and_number", "[,1]" },
    { "n_array_double_comma", "[1,,2]" },
    { "n_array_extra_close", [==[["x"]]]==] },
    { "n_array_extra_comma", [[["",] ]] },
    { "n_array_incomplete", [[["x"]] },
    { "n_array_incomplete_invalid_value", "[x" },
    { "n_array_inner_array_no_comma", "[3[4]]" },
    { "n_array_invalid_utf8", "[\255]" },
    { "n_array_just_comma", "[,]" },
    { "n_array_just_minus", "[-]" },
    { "n_array_missing_value", [[[   , ""] ]] },
    { "n_array_newlines_unclosed", "[\"a\",\n4\n,1," },
    { "n_array_number_and_comma", "[1,]" },
    { "n_array_number_and_several_commas", "[1,,]" },
    { "n_array_star_inside", "[*]" },
    { "n_array_unclosed", [[[""]] },
    { "n_array_unclosed_trailing_comma", "[1," },
    { "n_array_unclosed_with_object_inside", "[{}" },
    { "n_incomplete_false", "[fals]" },
    { "n_incomplete_null", "[nul]" },
    { "n_incomplete_true", "[tru]" },
    { "n_number_++", "[++1234]" },
    { "n_number_+1", "[+1]" },
    { "n_number_+Inf", "[+Inf]" },
    { "n_number_-01", "[-01]" },
    { "n_number_-1.0.", "[-1.0.]" },
    { "n_number_-2.", "[-2.]" },
    { "n_number_-NaN", "[-NaN]" },
    { "n_number_.-1", "[.-1]" },
    { "n_number_.2e-3", "[.2e-3]" },
    { "n_number_0.1.2", "[0.1.2]" },
    { "n_number_0.3e+", "[0.3e+]" },
    { "n_number_0.e1", "[0.e1]" },
    { "n_number_0_capital_E+", "[0E+]" },
    { "n_number_1.0e-", "[1.0e-]" },
    { "n_number_1_000", "[1 000.0]" },
    { "n_number_2.e3", "[2.e3]" },
    { "n_number_9.e+", "[9.e+]" },
    { "n_number_Inf", "[Inf]" },
    { "n_number_NaN", "[NaN]" },
    { "n_number_U+FF11_fullwidth_digit_one", "[\239\188\145]" },
    { "n_number_hex_1_digit", "[0x1]" },
    { "n_number_infinity", "[Infinity]" },
    { "n_number_minus_infinity", "[-Infinity]" },
    { "n_number_minus_space_1", "[- 1]" },
    { "n_number_neg_int_starting_with_zero", "[-012]" },
    { "n_number_neg_real_without_int_part", "[-.123]" },
    { "n_number_real_without_fractional_part", "[1.]" },
    { "n_number_with_leading_zero", "[012]" },
    { "n_number_starting_with_dot", "[.123]" },
    { "n_number_lone_minus", "-" },
    { "n_number_huge_exp (out of range: an implementation limit, RFC 8259 s. 9)", "[1e400]" },
    { "n_number_huge_negative_exp_value", "-1.5e99999" },
    { "n_object_bad_value", [[["x", truth] ]] },
    { "n_object_comma_instead_of_colon", [[{"x", null}]] },
    { "n_object_double_colon", [[{"x"::"b"}]] },
    { "n_object_missing_colon", [[{"a" b}]] },
    { "n_object_missing_key", [[{:"b"}]] },
    { "n_object_missing_value", [[{"a":]] },
    { "n_object_no-colon", [[{"a"]] },
    { "n_object_non_string_key", "{1:1}" },
    { "n_object_repeated_null_null", "{null:null,null:null}" },
    { "n_object_single_quote", "{'a':0}" },
    { "n_object_trailing_comma", [[{"id":0,}]] },
    { "n_object_trailing_comment", [[{"a":"b"}/**/]] },
    { "n_object_unquoted_key", [[{a: "b"}]] },
    { "n_object_with_single_string", [[{ "foo" : "bar", "a" }]] },
    { "n_single_space", " " },
    { "n_string_1_surrogate_then_escape", [[["\uD800\"] ]] },
    { "n_string_1_surrogate_then_escape_u", [[["\uD800\u"] ]] },
    { "n_string_1_surrogate_then_escape_u1", [[["\uD800\u1"] ]] },
    { "n_string_1_surrogate_then_escape_u1x", [[["\uD800\u1x"] ]] },
    { "n_string_accentuated_char_no_quotes", "[\195\169]" },
    { "n_string_backslash_00", "[\"\\\0\"]" },
    { "n_string_escape_x", [[["\x00"] ]] },
    { "n_string_escaped_backslash_bad", [[["\\\"] ]] },
    { "n_string_escaped_ctrl_char_tab", "[\"\\\t\"]" },
    { "n_string_escaped_emoji", "[\"\\\240\159\140\128\"]" },
    { "n_string_incomplete_escape", [[["\"] ]] },
    { "n_string_incomplete_escaped_character", [[["\u00A"] ]] },
    { "n_string_incomplete_surrogate", [[["\uD834\uDd"] ]] },
    { "n_string_invalid_backslash_esc", [[["\a"] ]] },
    { "n_string_invalid_unicode_escape", [[["\uqqqq"] ]] },
    { "n_string_invalid_utf8_after_escape", "[\"\\\229\"]" },
    { "n_string_single_quote", "['single quote']" },
    { "n_string_start_escape_unclosed", [[["\]] },
    { "n_string_unescaped_ctrl_char", "[\"a\0a\"]" },
    { "n_string_unescaped_newline", "[\"new\nline\"]" },
    { "n_string_unescaped_tab", "[\"\t\"]" },
    { "n_string_unicode_CapitalU", [["\UA66D"]] },
    { "n_string_unclosed", [["abc]] },
    { "n_string_lone_high_surrogate", [[["\uD800"] ]] },
    { "n_string_lone_low_surrogate", [[["\uDFAA"] ]] },
    { "n_string_two_high_surrogates", [[["\uD800\uD800"] ]] },
    { "n_string_high_surrogate_then_bmp", [[["\uD888\u1234"] ]] },
    { "n_string_low_then_high_surrogate", [[["\uDC00\uD800"] ]] },
    { "n_string_utf8_lone_continuation", "[\"\128\"]" },
    { "n_string_utf8_overlong_2", "[\"\192\175\"]" },
    { "n_string_utf8_overlong_2_c1", "[\"\193\191\"]" },
    { "n_string_utf8_overlong_3", "[\"\224\128\175\"]" },
    { "n_string_utf8_overlong_4", "[\"\240\128\128\175\"]" },
    { "n_string_utf8_surrogate_raw", "[\"\237\160\128\"]" },
    { "n_string_utf8_above_10FFFF", "[\"\244\144\128\128\"]" },
    { "n_string_utf8_F5", "[\"\245\128\128\128\"]" },
    { "n_string_utf8_FF", "[\"\255\"]" },
    { "n_string_utf8_truncated_3", "[\"\230\151\"]" },
    { "n_string_utf8_truncated_4_at_end", "\"\240\159\152" },
    { "n_string_utf8_bad_continuation", "[\"\230\065\065\"]" },
    { "n_structure_UTF8_BOM_no_data", "\239\187\191" },
    { "n_structure_UTF8_BOM_object", "\239\187\191{}" },
    { "n_structure_ascii-unicode-identifier", "a\195\165" },
    { "n_structure_angle_bracket_null", "[<null>]" },
    { "n_structure_capitalized_True", "[True]" },
    { "n_structure_close_unopened_array", "1]" },
    { "n_structure_double_array", "[][]" },
    { "n_structure_end_array", "]" },
    { "n_structure_incomplete_UTF8_BOM", "\239\187{}" },
    { "n_structure_lone-open-bracket", "[" },
    { "n_structure_no_data", "" },
    { "n_structure_null-byte-outside-string", "[\0]" },
    { "n_structure_null_byte_after_value", "[1]\0" },
    { "n_structure_number_with_trailing_garbage", "2@" },
    { "n_structure_object_followed_by_closing_object", "{}}" },
    { "n_structure_object_unclosed_no_value", [[{"":]] },
    { "n_structure_object_with_comment", [[{"a":/*comment*/"b"}]] },
    { "n_structure_open_array_apostrophe", "['" },
    { "n_structure_trailing_#", [[{"a":"b"}#{}]] },
    { "n_structure_two_values", "1 2" },
    { "n_structure_two_literals", "true false" },
    { "n_structure_uescaped_LF_before_string", [[[\u000A""] ]] },
    { "n_structure_unicode-identifier", "\195\165" },
    { "n_structure_whitespace_formfeed", "[\f]" },
    { "n_structure_whitespace_U+2060_word_joiner", "[\226\129\160]" },
    { "n_structure_whitespace_nbsp", "[\194\1601]" },
    { "n_structure_python_none", "None" },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      assert_rejected(c[2])
    end)
  end

  it("with messages that give the reason and the 1-based byte", function()
    local function msg(s, depth) return select(2, decode(s, depth)) end
    assert.equal("invalid JSON: unexpected character at byte 4", msg("[1,]"))
    assert.equal("invalid JSON: unexpected end of input at byte 1", msg(""))
    assert.equal("invalid JSON: unexpected end of input at byte 3", msg("[1"))
    assert.equal("invalid JSON: unexpected data after the value at byte 2", msg("01"))
    assert.equal("invalid JSON: unexpected data after the value at byte 4", msg("[1]x"))
    assert.equal("invalid JSON: invalid number at byte 3", msg("1.e5"))
    assert.equal("invalid JSON: number out of range at byte 2", msg("[1e400]"))
    assert.equal("invalid JSON: invalid escape at byte 3", msg([[["\a"] ]]))
    assert.equal("invalid JSON: invalid \\u escape at byte 3", msg([[["\u12"] ]]))
    assert.equal("invalid JSON: unpaired surrogate in \\u escape at byte 5", msg([[["ab\uD800x"] ]]))
    assert.equal("invalid JSON: unescaped control character in string at byte 4", msg("[\"a\nb\"]"))
    assert.equal("invalid JSON: invalid UTF-8 at byte 4", msg("{\"a\192\175\":1}"))
    assert.equal("invalid JSON: nesting deeper than 2 at byte 3", msg("[[[1]]]", 2))
  end)

  it("without echoing input bytes (responses may carry secrets)", function()
    for _, s in ipairs({ '{"token":"hunter2"', '{"token":"hunter2\1"}', '{"token":hunter2}', 'hunter2' }) do
      local v, err = decode(s)
      assert.is_nil(v)
      assert.falsy(err:find("hunter", 1, true), err)
    end
  end)
end)

describe("json_decode numbers", function()
  local function int(s, want) -- for #integers only: math.type is 5.3+
    local v = decode(s)
    assert.equal("integer", math.type(v))
    assert.equal(want, v)
  end

  it("keeps the 64-bit IDs exact as integers #integers", function()
    int("3049040650094403584", 3049040650094403584)
    int("3197218168379846218", 3197218168379846218)
    int("3049036224189325312", 3049036224189325312)
    int("9223372036854775807", math.maxinteger)
    int("-9223372036854775808", math.mininteger)
    int("10000", 10000)
    int("-0", 0)
    -- lua-cjson's double would have turned this one into ...144.
    assert.equal("3197218168379846218", tostring(decode("[3197218168379846218]")[1]))
    assert.equal(3197218168379846218, decode([[{"planId":3197218168379846218}]]).planId)
  end)

  it("keeps integers up to 2^53 numbers and gives every larger one as its exact numeral #doubles", function()
    -- Numbers only while each integer is exact: up to 2^53 = 9007199254740992.
    for s, want in pairs({ ["10000"] = 10000, ["-0"] = 0, ["9007199254740992"] = 2 ^ 53,
                           ["-9007199254740992"] = -2 ^ 53, ["9007199254740991"] = 2 ^ 53 - 1 }) do
      local v = decode(s)
      assert.equal("number", type(v), s)
      assert.equal(want, v, s)
    end
    -- Beyond, a string, even where the double happens to be exact (2^53 + 2, 2^62, the IDs):
    -- the type depends on the magnitude alone, not on luck.
    for _, s in ipairs({ "9007199254740993", "-9007199254740993", "9007199254740994",
                         "4611686018427387904", "3049040650094403584", "3197218168379846218",
                         "3049036224189325312", "9223372036854775807", "-9223372036854775808" }) do
      assert.equal(s, decode(s))
    end
    -- A double would have turned this one into ...144.
    assert.equal("3197218168379846218", decode("[3197218168379846218]")[1])
    assert.equal("3197218168379846218", decode([[{"planId":3197218168379846218}]]).planId)
  end)

  it("gives the exact numeral as a string when it does not fit 64 bits", function()
    assert.equal("17896360390850257349", decode("17896360390850257349"))
    assert.equal("9223372036854775808", decode("9223372036854775808"))
    assert.equal("-9223372036854775809", decode("-9223372036854775809"))
    assert.equal("100000000000000000000000000000", decode("100000000000000000000000000000"))
    assert.same({ id = "17896360390850257349" }, decode([[{"id":17896360390850257349}]]))
  end)

  it("makes floats of fractions and exponents, even integral ones", function()
    -- 1e20 is integral and beyond 2^53, yet written as a float: a number, not an ID's text.
    for s, want in pairs({ ["1.0"] = 1.0, ["1e2"] = 100.0, ["-0.0"] = -0.0, ["0.1"] = 0.1,
                           ["2.5E-3"] = 0.0025, ["1.7976931348623157e308"] = 1.7976931348623157e308,
                           ["1e20"] = 1e20 }) do
      local v = decode(s)
      assert.equal(INTEGERS and "float" or "number", numtype(v), s)
      assert.equal(want, v, s)
    end
    assert.equal(-math.huge, 1 / decode("-0.0")) -- the sign of zero survives
  end)
end)

describe("json_decode structure", function()
  it("returns null as partner.null, a light userdata, so arrays have no holes", function()
    assert.equal("userdata", type(null))
    assert.equal(null, decode("null"))
    local t = decode("[null,2,null]")
    assert.equal(3, #t)
    assert.equal(null, t[1])
    assert.equal(null, t[3])
  end)

  it("limits nesting to 512 by default and to max_depth when given", function()
    assert.is_table(decode(("["):rep(512) .. ("]"):rep(512)))
    assert.same({ nil, "invalid JSON: nesting deeper than 512 at byte 513" },
                { decode(("["):rep(513) .. ("]"):rep(513)) })
    assert.is_table(decode("[[1]]", 2))
    assert.same({ nil, "invalid JSON: nesting deeper than 1 at byte 2" }, { decode("[[1]]", 1) })
    assert.is_table(decode("[[1]]", 0)) -- < 1 means the default
  end)

  it("fails cleanly on 100,000-deep arrays and objects", function()
    assert.same({ nil, "invalid JSON: nesting deeper than 512 at byte 513" },
                { decode(("["):rep(100000)) })
    assert.same({ nil, "invalid JSON: nesting deeper than 512 at byte 513" },
                { decode(("["):rep(100000) .. ("]"):rep(100000)) })
    assert.same({ nil, "invalid JSON: nesting deeper than 512 at byte 2561" },
                { decode(('{"a":'):rep(100000)) })
  end)

  -- On Lua 5.1 and LuaJIT lua_checkstack grows a C function's stack only to about 8000 slots
  -- (one per array level, two per object level); 5.2 and later allow a million.
  local SMALL_STACK = helpers.RUNTIME == "5.1" or helpers.RUNTIME == "luajit"

  it("decodes deep documents without recursion when max_depth allows", function()
    local n = SMALL_STACK and 3000 or 20000
    local v = assert(decode(("["):rep(n) .. "7" .. ("]"):rep(n), n))
    for _ = 1, n do v = v[1] end
    assert.equal(7, v)
    local o = assert(decode(('{"a":'):rep(n) .. "true" .. ("}"):rep(n), n))
    for _ = 1, n do o = o.a end
    assert.equal(true, o)
  end)

  it("fails cleanly, not with a Lua stack overflow, past what the Lua stack holds", function()
    local v, err = decode(('{"a":'):rep(600000), 1000000000)
    assert.is_nil(v)
    assert.equal("invalid JSON: nesting too deep for the Lua stack at byte ", err:match("^.-byte "))
    if SMALL_STACK then -- there, the 20,000 levels that 5.2+ decode are already too many
      local n = 20000
      local deep, deep_err = decode(("["):rep(n) .. "7" .. ("]"):rep(n), n)
      assert.is_nil(deep)
      assert.equal("invalid JSON: nesting too deep for the Lua stack at byte ", deep_err:match("^.-byte "))
    end
  end)

  it("takes only a string, and an integer depth", function()
    assert.has_error(function() decode(123) end)
    assert.has_error(function() decode() end)
    assert.has_error(function() decode("[]", "deep") end)
  end)
end)

describe("json_encode", function()
  it("writes compact output with keys sorted bytewise", function()
    assert.equal([[{"a":2,"b":1,"c":[3,4]}]], encode({ b = 1, a = 2, c = { 3, 4 } }))
    assert.equal([[{"B":1,"_":2,"a":3,"aa":4,"z":5,"é":6}]],
                 encode({ ["é"] = 6, z = 5, aa = 4, a = 3, _ = 2, B = 1 }))
    assert.equal([[{"a":{"x":[1,{"y":null}]},"b":[{}]}]], encode({ a = { x = { 1, { y = null } } }, b = { {} } }))
    assert.equal([[{"":0,"a\u0000":1}]], encode({ [""] = 0, ["a\0"] = 1 }))
  end)

  it("writes scalars", function()
    assert.equal("null", encode(nil))
    assert.equal("null", encode(null))
    assert.equal("true", encode(true))
    assert.equal("false", encode(false))
    assert.equal("{}", encode({}))
    assert.equal("[null,1]", encode({ null, 1 }))
    assert.equal('""', encode(""))
  end)

  it("writes integers exactly #integers", function()
    assert.equal("3197218168379846218", encode(3197218168379846218))
    assert.equal("9223372036854775807", encode(math.maxinteger))
    assert.equal("-9223372036854775808", encode(math.mininteger))
    assert.equal("[3049040650094403584,0,-1]", encode({ 3049040650094403584, 0, -1 }))
  end)

  it("writes integral numbers as their exact digits, never an exponent #doubles", function()
    assert.equal("9007199254740992", encode(2 ^ 53))
    assert.equal("9223372036854775808", encode(2 ^ 63))
    assert.equal("-9223372036854775808", encode(-2 ^ 63))
    assert.equal("1180591620717411303424", encode(2 ^ 70))
    -- This ID happens to be a double exactly; "%.17g" would have written 3.0490406500944036e+18.
    assert.equal("[3049040650094403584,0,-1]", encode({ 3049040650094403584, 0, -1 }))
    -- The digits of the double: the literal lost its last ones in Lua's parser already, which
    -- is why such IDs travel as strings (or int64 cdata on LuaJIT) here.
    assert.equal("3197218168379846144", encode(3197218168379846218))
  end)

  if helpers.RUNTIME == "luajit" then
    it("writes LuaJIT's int64_t/uint64_t cdata as their exact digits and refuses other cdata #doubles", function()
      local ffi = require "ffi"
      -- LL/ULL literals are LuaJIT syntax: compiled here so that the file parses everywhere.
      local id, umax, imin = assert(loadstring(
        "return 3049036224189325400LL, 18446744073709551615ULL, -9223372036854775807LL - 1"))()
      assert.equal("3049036224189325400", encode(id))
      assert.equal("18446744073709551615", encode(umax))
      assert.equal("-9223372036854775808", encode(imin))
      assert.equal('{"ids":[3049036224189325400,0,-1]}', encode({ ids = { id, ffi.new("int64_t", 0), ffi.new("int64_t", -1) } }))
      -- Decoded again, the digits survive as a string (a double would read ...5312).
      assert.equal("3049036224189325400", decode(encode(id)))
      for _, c in ipairs({ ffi.new("int32_t", 5), ffi.new("double", 1), ffi.new("int[2]"), ffi.cast("void *", 0) }) do
        local ok, err = pcall(encode, c)
        assert.is_false(ok)
        assert.equal("json_encode: cannot encode a cdata value", err)
      end
      local ok, err = pcall(encode, { a = { ffi.new("double", 1) } })
      assert.is_false(ok)
      assert.equal("json_encode: cannot encode a cdata value at key 'a[1]'", err)
    end)
  end

  it("writes floats as the shortest text that reads back equal", function()
    assert.equal("0.1", encode(0.1))
    assert.equal("1.5", encode(1.5))
    assert.equal("0.3333333333333333", encode(1 / 3))
    assert.equal("3.141592653589793", encode(math.pi))
    assert.equal("1e-07", encode(1e-7))
    assert.equal("-0.0", encode(-0.0))
    for _, x in ipairs({ 0.1, 1 / 3, math.pi, 1e-7, 123456.789, 2.0 ^ -1074, -2.5e-300 }) do
      local back = decode(encode(x))
      assert.equal(INTEGERS and "float" or "number", numtype(back))
      assert.equal(x, back)
    end
  end)

  it("writes large integral floats in exponent form, as floats #integers", function()
    assert.equal("1e+300", encode(1e300))
    assert.equal("9.223372036854776e+18", encode(2.0 ^ 63))
    local back = decode(encode(1.7976931348623157e308))
    assert.equal("float", math.type(back))
    assert.equal(1.7976931348623157e308, back)
  end)

  it("writes large integral numbers in full, so they decode as their exact digits #doubles", function()
    assert.equal("10000000000000000000000", encode(1e22)) -- 1e22 is exact as a double
    local big = encode(1e300) -- the double's exact value, not the 1 and 300 zeros of its literal
    assert.truthy(big:match("^1%d+$") and #big == 301, big)
    assert.equal(1e300, tonumber(big))
    local max = decode(encode(1.7976931348623157e308))
    assert.equal("string", type(max))
    assert.equal(309, #max)
    assert.equal(1.7976931348623157e308, tonumber(max))
  end)

  it("keeps integral floats floats, so that they decode as floats again #integers", function()
    assert.equal("100.0", encode(100.0))
    assert.equal("0.0", encode(0.0))
    assert.equal("3.0490406500944036e+18", encode(3049040650094403584.0))
    assert.equal("-9.223372036854776e+18", encode(-2.0 ^ 63))
    for _, x in ipairs({ 100.0, 0.0, -0.0, 1e15, 1e16, 2.0 ^ 53, 3049040650094403584.0, -2.0 ^ 63 }) do
      local back = decode(encode(x))
      assert.equal("float", math.type(back))
      assert.equal(x, back)
    end
    assert.equal("[1.0,2]", encode(decode("[1.0,2]")))
  end)

  it("writes integral numbers bare: up to 2^53 they decode as equal numbers, beyond as exact digits #doubles", function()
    -- Made at run time: Lua 5.1 merges the constants 0.0 and -0.0 within a function.
    local zero = 0
    local neg_zero = -zero
    assert.equal("100", encode(100.0))
    assert.equal("0", encode(0.0))
    assert.equal("-0.0", encode(neg_zero)) -- "-0" would be the integer 0 to a reader with integers
    for _, x in ipairs({ 100.0, 0.0, neg_zero, 1e15, 2.0 ^ 53, -2.0 ^ 53 }) do
      local back = decode(encode(x))
      assert.equal("number", type(back))
      assert.equal(x, back)
    end
    assert.equal(-math.huge, 1 / decode(encode(neg_zero))) -- the sign of zero survives
    for digits, x in pairs({ ["10000000000000000"] = 1e16, ["9007199254740994"] = 2.0 ^ 53 + 2,
                             ["3049040650094403584"] = 3049040650094403584.0, ["-9223372036854775808"] = -2.0 ^ 63 }) do
      local back = decode(encode(x))
      assert.equal(digits, back)
      assert.equal(x, tonumber(back))
    end
    assert.equal("[1,2]", encode(decode("[1.0,2]")))
  end)

  it("keeps empty arrays arrays: decoded ones carry partner.array_mt", function()
    local partner = require "yeastar.partner"
    local doc = decode('{"connectionServiceList":[],"nested":[[]],"obj":{}}')
    assert.equal(partner.array_mt, getmetatable(doc.connectionServiceList))
    assert.equal('{"connectionServiceList":[],"nested":[[]],"obj":{}}', encode(doc))
    assert.equal("[]", encode(setmetatable({}, partner.array_mt)))
    assert.equal("[]", encode(setmetatable({}, { __jsontype = "array" })))
    assert.equal("{}", encode({}))
    assert.equal("{}", encode(setmetatable({}, {})))
    assert.equal("array", partner.array_mt.__jsontype)
    assert.equal(2, #decode("[1,2]"))
  end)

  it("escapes quotes, backslashes and control characters and keeps other UTF-8", function()
    assert.equal([["a\"b\\c/d"]], encode('a"b\\c/d'))
    assert.equal([["\b\f\n\r\t\u0000\u0001\u001f"]], encode("\b\f\n\r\t\0\1\31"))
    assert.equal('"\127\195\169\240\159\152\128\226\128\168"', encode("\127\195\169\240\159\152\128\226\128\168"))
  end)

  it("raises on values JSON cannot hold, naming the function and the place", function()
    local cycle = {}
    cycle.self = cycle
    local cases = {
      { print, "json_encode: cannot encode a function value" },
      { { a = { b = { print } } }, "json_encode: cannot encode a function value at key 'a.b[1]'" },
      { { io.stdout }, "json_encode: cannot encode a userdata value at key '[1]'" },
      { coroutine.create(function() end), "json_encode: cannot encode a thread value" }, -- 5.1: no C function
      { 0 / 0, "json_encode: cannot encode NaN or infinity" },
      { { x = { y = { math.huge } } }, "json_encode: cannot encode NaN or infinity at key 'x.y[1]'" },
      { -math.huge, "json_encode: cannot encode NaN or infinity" },
      { "\255", "json_encode: string is not valid UTF-8" },
      { { s = "\237\160\128" }, "json_encode: string is not valid UTF-8 at key 's'" },
      { { s = "\192\175" }, "json_encode: string is not valid UTF-8 at key 's'" },
      { { ["\255"] = 1 }, "json_encode: key is not valid UTF-8" },
      { { 1, 2, nil, 4 }, "json_encode: array has holes (use partner.null for null)" },
      { { [2] = 1 }, "json_encode: array has holes (use partner.null for null)" },
      { { 1, a = 2 }, "json_encode: table keys must be 1..n or all strings" },
      { { [0] = 1 }, "json_encode: table keys must be 1..n or all strings" },
      { { [-1] = 1 }, "json_encode: table keys must be 1..n or all strings" },
      { { [1.5] = 1 }, "json_encode: table keys must be 1..n or all strings" },
      { { [true] = 1 }, "json_encode: table keys must be 1..n or all strings" },
      { { o = { [{}] = 1 } }, "json_encode: table keys must be 1..n or all strings at key 'o'" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(encode, c[1])
      assert.is_false(ok)
      assert.equal(c[2], err)
    end
    local ok, err = pcall(encode, cycle)
    assert.is_false(ok)
    assert.truthy(err:find("^json_encode: tables nested deeper than 512 %(a cycle%?%) at key '%.%.%.self%.self"), err)
    assert.has_error(function() encode() end)
  end)

  it("allows 512 nested tables and refuses 513", function()
    local function nest(n)
      local t = {}
      for _ = 2, n do t = { t } end
      return t
    end
    assert.equal(("["):rep(511) .. "{}" .. ("]"):rep(511), encode(nest(512)))
    assert.has_error(function() encode(nest(513)) end)
  end)
end)

describe("round trips", function()
  -- The same documents everywhere; only the IDs and extremes differ with the runtime's numbers.
  local function assert_round_trips(order_id, plan_id, max, min)
    local values = {
      { errcode = 0, errmsg = "SUCCESS", requestId = "a1b2",
        data = { pageNo = 1, pageSize = 20, total = 3,
                 list = { { orderId = order_id, planId = plan_id, bigId = "17896360390850257349",
                            amount = 1249.5, paid = true, remark = null, tags = { "a", "\230\151\165" } } } } },
      { max, min, 0, -1, 0.5, -0.0, "", "\0", "\"\\/\b\f\n\r\t\31" },
      "\240\159\152\128",
      null,
      { [""] = { {} , { k = {} } } },
    }
    for i, v in ipairs(values) do
      local d = diff(decode(encode(v)), v, "values[" .. i .. "]")
      assert(d == nil, d)
    end
  end

  it("decode(encode(v)) gives v back #integers", function()
    assert_round_trips(3197218168379846218, 3049040650094403584, math.maxinteger, math.mininteger)
  end)

  it("decode(encode(v)) gives v back #doubles", function()
    -- IDs beyond 2^53 are strings here (as decode gives them); numbers reach +-2^53.
    assert_round_trips("3197218168379846218", 9007199254740992, 2 ^ 53, -2 ^ 53)
    -- A number beyond comes back as the digits of its exact value.
    assert.same({ "9223372036854775808", "-9223372036854775808", "1180591620717411303424" },
                decode(encode({ 2 ^ 63, -2 ^ 63, 2 ^ 70 })))
  end)

  it("encode(decode(s)) gives canonical s back byte for byte", function()
    for _, s in ipairs({
      [[{"data":{"list":[{"id":3197218168379846218,"n":null}],"total":1},"errcode":0,"errmsg":"SUCCESS"}]],
      [=[[9223372036854775807,-9223372036854775808,"17896360390850257349",1.5,-0.0,true,false,null]]=],
      [["\ud83d\ude00 \u0001 \" \\"]],
    }) do
      local canonical = encode(decode(s))
      assert.equal(canonical, encode(decode(canonical)))
    end
    assert.equal("\"\240\159\152\128\"", encode(decode([["\ud83d\ude00"]])))
  end)

  it("encode(decode(s)) keeps a 64-bit ID's number byte for byte #integers", function()
    assert.equal([[{"data":{"id":3197218168379846218}}]], encode(decode([[ { "data" : { "id" : 3197218168379846218 } } ]])))
  end)

  it("encode(decode(s)) keeps an ID's digits: bare up to 2^53, quoted beyond #doubles", function()
    assert.equal([[{"data":{"id":9007199254740992}}]], encode(decode([[ { "data" : { "id" : 9007199254740992 } } ]])))
    -- Decoded as a string, so written as one: the digits are exact, the JSON type is not kept.
    assert.equal([[{"data":{"id":"3197218168379846218"}}]], encode(decode([[ { "data" : { "id" : 3197218168379846218 } } ]])))
  end)

  it("partner.null survives both ways", function()
    assert.equal(null, decode(encode(null)))
    assert.equal("[null]", encode(decode("[null]")))
    assert.equal([[{"a":null}]], encode(decode([[{"a":null}]])))
  end)
end)
