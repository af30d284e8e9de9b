#!/usr/bin/env python3
# fakeportal/portal.py: a fake Yeastar Partner Portal OpenAPI (HTTPS) plus a plain-HTTP control plane.
# Owns the seed data, the strict request validation, fault injection and request recording used by the specs.
"""Fake Yeastar Partner Portal.

Standard library only, on purpose: the module under test has its own JSON code,
and a fake built on the same code could share (and hide) the same bug.

Run:  python3 fakeportal/portal.py --state-dir /tmp/portal [--devices devices.csv]
It creates certificates in the state dir, listens, writes portal.json and prints
the base URL, CA file, credentials and control URL.  Stop it with Ctrl-C or SIGTERM.
One portal per state dir: a second start there is refused before it writes anything.
The README's section "The fake portal" documents the control plane and the devices file.

Fault semantics (POST /_control/fault), settled here because the brief leaves a
choice open:
  * process=true runs the real handler first (side effects kept), whatever the
    fault then sends.
  * drop / status / html / body / large_body_bytes without process: the request
    has no side effect.
  * delay alone, truncate and trickle send the REAL response, so the real action
    always happens for them; process=true only moves it before the delay.

Response framing (POST /_control/config {"response_framing": ...}, reset to
"length"), so HTTP/1.1 framers are tested against a real server.  It applies to
every API response except raw_b64 (exact bytes) and drop (no response):
  * "length": Content-Length, keep-alive (the default).
  * "chunked": Transfer-Encoding: chunked, keep-alive.  The body goes out in
    chunks of the sizes CHUNK_SIZES repeats; every second chunked response
    after a reset (the 2nd, 4th, ...) also announces and sends a trailer field
    (X-Portal-Trailer: response-N), writes its chunk sizes in upper-case hex
    and puts an extension on its first chunk ("1;portal-ext=1").  An HTTP/1.0
    request gets "close" instead: chunked is HTTP/1.1 only.
  * "close": no Content-Length, Connection: close; the body ends when the
    server closes the connection, after a TLS close_notify.
  truncate cuts the framed body (chunk lines included) in half and closes
  without close_notify; trickle and large_body_bytes are framed the same way.
"""

import argparse
import base64
import copy
import csv
import datetime
import email.parser
import email.policy
import fcntl
import http.server
import json
import math
import os
import re
import secrets
import shlex
import signal
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse

HANDSHAKE_TIMEOUT = 10      # a client that never finishes TLS must not pin a thread for ever
IDLE_TIMEOUT = 300          # keep-alive connections are closed after this much silence
REFRESH_LIFETIME = 15 * 86400
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
INT_RE = re.compile(r"-?[0-9]+")
JSON_TYPE = "application/json;charset=UTF-8"
FRAMINGS = ("length", "chunked", "close")
CHUNK_SIZES = (1, 7, 64, 5, 300, 2048)   # chunked framing: chunk sizes, repeated until the body ends
CLOSE_NOTIFY_TIMEOUT = 2    # close framing: how long to wait for the client's close_notify in return

# ---------------------------------------------------------------------------
# Seed data.  Every builder returns fresh objects so that reset is a plain rebuild.
# ---------------------------------------------------------------------------

PRODUCTS = [
    (9, "Linkus Cloud Service"),
    (11, "P-Series Plan for Appliance Edition"),
    (12, "P-Series Software Edition"),
    (13, "P-Series Cloud Edition"),
    (14, "P-Series Turnkey Package"),
    (15, "Remote Management"),
    (19, "Add-on Service"),
    (21, "Remote Management Premium"),
]
PRODUCT_NAMES = dict(PRODUCTS)

# productId -> (plans [(planId, name)], services [(serviceId, pricingServiceId, name)])
CATALOG = {
    9: ([(3048918321840570368, "Linkus Cloud Service"),
         (3048918719332507648, "Linkus Cloud Service Pro")], []),
    11: ([(3048558946648207360, "Standard Plan"),
          (3048560232537899008, "Enterprise Plan"),
          (3048560606464323584, "Ultimate Plan")],
         [(3116037397465776128, 27946, "Hotel PMS Integration")]),
    12: ([(3049040650094403584, "Enterprise Plan")], []),
    13: ([(3048571730026938368, "Enterprise Plan"),
          (3048572026291630080, "Ultimate Plan")],
         [(3048573516041273344, 27947, "Extension Expansion"),
          (3048573759449317376, 27948, "Recording Minutes"),
          (3048573935752720384, 27949, "High Availability")]),
    15: ([(3049036224189325312, "Remote Management Account"),
          (3049036224189325400, "Remote Management Trial")],
         [(3049036224189326000, 27950, "Remote Management Connections")]),
}


def plan_ids(product_id):
    return {p[0] for p in CATALOG.get(product_id, ([], []))[0]}


def service_ids(product_id):
    return {s[0] for s in CATALOG.get(product_id, ([], []))[1]}


def offering_id(product_id):
    return "30490362241893%05d" % product_id


# (productNo, productId, autoRenew, planId, model, expiry): the expiry in days from the portal's
# today, so that a renewal audit always finds one device of each kind (None: the details carry
# no currentPlanExpireDate, which the guide documents as returned only conditionally).
SEED_DEVICES = [
    ("3651E0529415", 12, True, 3049040650094403584, "PSE", 12),            # soon, auto-renewal on
    ("3632E0965333", 11, False, 3048560232537899008, "P560", 20),          # soon, unprotected
    ("3076913644890832896", 15, False, 3049036224189325312, "RM", -5),     # expired
    ("3651E0529416", 12, False, 3049040650094403584, "PSE", 200),          # far off
    ("3632E0965334", 11, False, 3048558946648207360, "P550", 30),          # the 30-day boundary
    ("1369A2021101", 13, True, 3048571730026938368, "PCE", None),          # no expiry date
]
PLAN_NAMES = {plan_id: name for plans, _ in CATALOG.values() for plan_id, name in plans}

DEFAULT_EXPIRY = "+365"   # the expiry of a device that names none: a year from the portal's today
MAX_EXPIRY_DAYS = 36500   # "+N"/"-N": at most a century either way


def today_utc():
    """The portal's today: the UTC date at start-up and at every reset, so a test that reads it
    from /_control/state never sees the date change under it at midnight."""
    return datetime.datetime.now(datetime.timezone.utc).date()


def expiry_date(spec, today):
    """currentPlanExpireDate of an expiry spec: "YYYY-MM-DD" as is, "+N"/"-N" days from today,
    None for a device without one."""
    if spec is None or DATE_RE.fullmatch(spec):
        return spec
    return (today + datetime.timedelta(days=int(spec))).isoformat()


def make_device(no, pid, auto, plan, model, expiry=DEFAULT_EXPIRY, n=1, fail=False):
    """Device number n (from 1): its activation code and creation day follow from n.  Its
    expiry date is set by dated(), against the portal's today."""
    return {"productNo": no, "productId": pid, "autoRenew": auto, "planId": plan, "model": model,
            "expiry_spec": expiry, "expiry": None, "activationCode": "AC%06d%s" % (n, no[-4:]),
            "createTime": 1704067200000 + (n - 1) * 86400000, "fail": fail}


def dated(d, today):
    d["expiry"] = expiry_date(d["expiry_spec"], today)
    return d


def seed_devices(today, extra=()):
    """The seed devices, then those of --devices (a device of the file replaces a seed one)."""
    devices = {}
    for i, (no, pid, auto, plan, model, days) in enumerate(SEED_DEVICES):
        spec = None if days is None else "%+d" % days
        devices[no] = dated(make_device(no, pid, auto, plan, model, spec, n=i + 1), today)
    for d in extra:
        devices[d["productNo"]] = dated(copy.deepcopy(d), today)
    return devices


# ---------------------------------------------------------------------------
# Devices from a file (--devices) or from POST /_control/devices
# ---------------------------------------------------------------------------

DEVICE_FIELDS = ("productNo", "productId", "planId", "autoRenew", "model", "expiry")
DEVICE_REQUIRED = DEVICE_FIELDS[:4]
PRODUCT_NO_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
RELATIVE_RE = re.compile(r"[+-][0-9]{1,5}")


class DeviceError(Exception):
    pass


def device_from(values, n, strings):
    """One device from {field: value}: CSV cells (strings=True, all text) or a JSON object.
    Raises DeviceError naming the field; n numbers the activation code and creation time."""
    for k in values:
        if k not in DEVICE_FIELDS:
            raise DeviceError("unknown field %r (fields: %s)" % (k, ", ".join(DEVICE_FIELDS)))
    for k in DEVICE_REQUIRED:
        if values.get(k) in (None, ""):
            raise DeviceError("%s is missing" % k)
    no = values["productNo"]
    if type(no) is not str or not PRODUCT_NO_RE.fullmatch(no):
        raise DeviceError("productNo must be 1 to 64 letters, digits, '.', '_' or '-', got %r" % (no,))

    def integer(k):   # a JSON integer or digits; IDs above 2^53 are best written as strings
        v = values[k]
        if type(v) is str and INT_RE.fullmatch(v):
            v = int(v)
        if type(v) is not int or not 1 <= v <= INT64_MAX:
            raise DeviceError("%s must be a positive integer, got %r" % (k, values[k]))
        return v
    pid, plan = integer("productId"), integer("planId")
    if pid not in PRODUCT_NAMES:
        raise DeviceError("productId %d is not a product (known: %s)" % (pid, ", ".join(str(p) for p, _ in PRODUCTS)))
    auto = values["autoRenew"]
    if strings and auto.lower() in ("true", "false"):   # spreadsheets write TRUE and FALSE
        auto = auto.lower() == "true"
    if type(auto) is not bool:
        raise DeviceError("autoRenew must be true or false, got %r" % (values["autoRenew"],))
    model = values.get("model") or PRODUCT_NAMES[pid]
    if type(model) is not str:
        raise DeviceError("model must be a string, got %r" % (model,))
    expiry = values.get("expiry") or DEFAULT_EXPIRY
    if type(expiry) is str and expiry.strip().lower() == "none":
        expiry = None
    elif type(expiry) is str and RELATIVE_RE.fullmatch(expiry) and abs(int(expiry)) <= MAX_EXPIRY_DAYS:
        pass
    else:
        m = DATE_RE.fullmatch(expiry) if type(expiry) is str else None
        try:
            datetime.date(*map(int, m.groups()))
        except (AttributeError, ValueError):
            raise DeviceError("expiry must be a date YYYY-MM-DD, +N or -N days from today (N up to %d),"
                              " or none, got %r" % (MAX_EXPIRY_DAYS, expiry))
    return make_device(no, pid, auto, plan, model, expiry, n)


def devices_from_list(items, where, strings=False):
    """Devices from {field: value} items: CSV cells (strings) or JSON objects.  where(i) says
    where item i is ("devices.csv:4", "device 3"); the first bad item raises DeviceError."""
    out, seen = [], {}
    for i, item in enumerate(items):
        try:
            if type(item) is not dict:
                raise DeviceError("a device is a JSON object, got %s" % type(item).__name__)
            d = device_from(item, 101 + i, strings)
            if d["productNo"] in seen:
                raise DeviceError("productNo %s is listed twice (first at %s)" % (d["productNo"], seen[d["productNo"]]))
        except DeviceError as e:
            raise DeviceError("%s: %s" % (where(i), e))
        seen[d["productNo"]] = where(i)
        out.append(d)
    return out


def load_devices(path):
    """Devices from a CSV file (header productNo,productId,planId,autoRenew[,model][,expiry], in
    any order; blank lines and # comments skipped) or, for a name ending in .json, a JSON list
    of such objects.  Raises DeviceError "FILE:LINE: why" for the first bad line."""
    try:
        with open(path, encoding="utf-8-sig") as fh:   # -sig: a spreadsheet's byte-order mark
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DeviceError("%s: cannot read the devices file: %s" % (path, e))
    if path.lower().endswith(".json"):
        return json_devices(path, text)
    rows = [(i + 1, line) for i, line in enumerate(text.splitlines())
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise DeviceError("%s: no header line (productNo,productId,planId,autoRenew[,model][,expiry])" % path)
    line_no, header = rows[0]
    columns = [c.strip() for c in next(csv.reader([header]))]
    for c in columns:
        if c not in DEVICE_FIELDS:
            raise DeviceError("%s:%d: unknown column %r (columns: %s)" % (path, line_no, c, ", ".join(DEVICE_FIELDS)))
        if columns.count(c) > 1:
            raise DeviceError("%s:%d: column %s is repeated" % (path, line_no, c))
    for c in DEVICE_REQUIRED:
        if c not in columns:
            raise DeviceError("%s:%d: the header has no column %s" % (path, line_no, c))
    items = []
    for line_no, line in rows[1:]:
        cells = [c.strip() for c in next(csv.reader([line]))]
        if len(cells) != len(columns):
            raise DeviceError("%s:%d: %d values for %d columns" % (path, line_no, len(cells), len(columns)))
        items.append(dict(zip(columns, cells)))
    return devices_from_list(items, lambda i: "%s:%d" % (path, rows[i + 1][0]), strings=True)


def json_devices(path, text):
    """The JSON form: the array is walked element by element, so a message can name the line
    where the bad device starts."""
    decoder = json.JSONDecoder()

    def line_of(pos):
        return text.count("\n", 0, pos) + 1

    def skip(pos):
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos, items, lines = skip(0), [], []
    try:
        if text[pos:pos + 1] != "[":
            raise DeviceError("%s:%d: a JSON devices file is a list of device objects" % (path, line_of(pos)))
        pos = skip(pos + 1)
        while text[pos:pos + 1] != "]":
            if items:
                if text[pos:pos + 1] != ",":
                    raise DeviceError("%s:%d: not valid JSON: ',' or ']' expected" % (path, line_of(pos)))
                pos = skip(pos + 1)
            item, end = decoder.raw_decode(text, pos)
            items.append(item)
            lines.append(line_of(pos))
            pos = skip(end)
        if skip(pos + 1) != len(text):
            raise DeviceError("%s:%d: not valid JSON: text after the list" % (path, line_of(skip(pos + 1))))
    except json.JSONDecodeError as e:
        raise DeviceError("%s:%d: not valid JSON: %s" % (path, e.lineno, e.msg))
    return devices_from_list(items, lambda i: "%s:%d" % (path, lines[i]))


def seed_users():
    return [
        {"partnerId": "customer1@example.com", "email": "customer1@example.com",
         "firstName": "Maria", "lastName": "Schmidt", "company": "Schmidt Hotels GmbH",
         "country": "Germany", "stateProvince": "Bayern", "city": "München",
         "street": "Leopoldstraße 1", "zipCode": "80802", "phoneNumber": "+49 89 123456",
         "taxNum": "DE123456789", "remark": "", "userType": "Enduser"},
        {"partnerId": "customer2@example.com", "email": "customer2@example.com",
         "firstName": "John", "lastName": "Doe", "company": "Doe Logistics Inc.",
         "country": "United States", "stateProvince": "Texas", "city": "Austin",
         "street": "100 Congress Ave", "zipCode": "78701", "phoneNumber": "+1 512 5550100",
         "taxNum": "", "remark": "VIP", "userType": "Enduser"},
    ]


BILLING_CONTACTS = [
    {"billingContactId": "3197218168379846218", "emailAddress": "billing@example.com",
     "firstName": "Alex", "lastName": "Reseller", "company": "Example Reseller Ltd",
     "country": "Germany", "stateProvince": "Berlin", "city": "Berlin",
     "street": "Friedrichstraße 100", "zipCode": "10117", "phoneNumber": "+49 30 1234567",
     "taxNum": "DE987654321", "remark": ""},
    {"billingContactId": "3197218168379846219", "emailAddress": "finance@example.com",
     "firstName": "Sam", "lastName": "Finance", "company": "Example Reseller Ltd",
     "country": "Germany", "stateProvince": "Berlin", "city": "Berlin",
     "street": "Friedrichstraße 100", "zipCode": "10117", "phoneNumber": "+49 30 7654321",
     "taxNum": "DE987654321", "remark": "second contact"},
]

COUNTRIES = [("AU", 36, "Australia"), ("BR", 76, "Brazil"), ("CA", 124, "Canada"),
             ("CN", 156, "China"), ("CI", 384, "Côte d'Ivoire"), ("FR", 250, "France"),
             ("DE", 276, "Germany"), ("IT", 380, "Italy"), ("JP", 392, "Japan"),
             ("NL", 528, "Netherlands"), ("ES", 724, "Spain"), ("GB", 826, "United Kingdom"),
             ("US", 840, "United States")]

REGIONS = [
    {"id": "1", "name": "Europe", "region": [{"pbxSubDomain": ["eu1.pbx.example"], "pbxSubDomainId": "101"}]},
    {"id": "2", "name": "North America", "region": [{"pbxSubDomain": ["us1.pbx.example"], "pbxSubDomainId": "201"}]},
]

# Seed 002, the first order created after a reset answers exactly this.
FIRST_ORDER = {"instanceId": "1946688", "orderId": "1780042", "orderNo": "MK3400814131142238208",
               "orderStatus": "succeed", "productNo": "3076913644890832896",
               "transactionNo": "IH3400814132429889537"}
HISTORY_COUNT = 117           # the docs' example: 117 orders, pageSize 3 -> totalPage 39
FIRST_HISTORY_ID = 1779925    # ..1780041, so the first created order is 1780042


def seed_orders():
    orders = []
    for i in range(HISTORY_COUNT):
        no, pid = SEED_DEVICES[i % len(SEED_DEVICES)][:2]
        oid = FIRST_HISTORY_ID + i
        status = "pending" if i % 10 == 9 else "cancelled" if i % 13 == 12 else "succeed"
        orders.append({
            "id": str(oid), "orderNo": "MK%d" % (3400814131142238208 - (HISTORY_COUNT - i) * 1000003),
            "instanceId": str(1946688 - (HISTORY_COUNT - i)), "transactionNo": "",
            "orderStatus": status, "createTime": 1735689600000 + i * 2 * 86400000,
            "poNumber": "PO-%04d" % i if i % 5 == 0 else "", "productId": pid, "productNo": no,
            "operationType": "renew_plan", "billingId": BILLING_CONTACTS[0]["billingContactId"],
            "invoiceNo": "INV%d" % oid if status == "succeed" else "", "body": None})
    return orders


# Seed 003 verbatim (key order as in the seed).
RENEW_ADD_ON_27946 = {
    "billingCycleList": ["annually"], "billingModelList": ["recurring"],
    "connectionServiceList": [], "name": "Hotel PMS Integration", "pricingServiceId": 27946,
    "purchaseMultiCycleList": [], "purchaseParameter": "", "purchaseParameterId": None,
    "serviceId": "3116037397465776128", "unitName": ""}

OPERATION_TYPES = ["trial_plan", "trial_service", "purchase_plan", "purchase_service",
                   "switch_plan", "switchTrial_plan", "renew_plan", "renew_service"]
SERVICE_TYPES = ["plan", "service"]
PURCHASE_TYPES = ["purchase", "renew", "trial", "switch", "switchTrial"]
BILLING_MODELS = ["recurring", "once"]
BILLING_CYCLES = ["monthly", "annually", "once"]

# ---------------------------------------------------------------------------
# Errors and validation
# ---------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status, code, message, result=None):
        super().__init__(message)
        self.status, self.code, self.message, self.result = status, code, message, result


def vfail(field, tag, message=None):
    default = {"required": "%s is required", "type": "%s has the wrong type",
               "unknown": "%s is not a known parameter", "min": "%s must be at least 1"}
    msg = message or default.get(tag, "%s is invalid") % field
    return ApiError(400, "parameter_validation_failed", msg, {"field": field, "tag": tag})


def not_found(code, what):
    return ApiError(404, code, what)


def oneof(field, value, allowed):
    if value not in allowed:
        raise vfail(field, "oneof", "%s must be one of %s" % (field, ", ".join(allowed)))


class F:
    """One JSON body field: its documented type, whether required, and nested shape."""

    def __init__(self, kind, required=False, fields=None, items=None, nonempty=False):
        self.kind, self.required, self.fields, self.items, self.nonempty = kind, required, fields, items, nonempty


def check_fields(obj, spec, prefix=""):
    """Strict check of a JSON object: unknown fields, then required ones, then types."""
    if type(obj) is not dict:
        raise vfail(prefix.rstrip(".") or "body", "type", "%s must be a JSON object" % (prefix.rstrip(".") or "body"))
    for name in obj:
        if name not in spec:
            raise vfail(prefix + name, "unknown")
    for name, f in spec.items():
        full = prefix + name
        v = obj.get(name)
        missing = name not in obj or (f.required and (v is None or (f.kind == "String" and v == "")))
        if missing:
            if f.required:
                raise vfail(full, "required")
            continue
        check_value(v, f, full)
    return obj


def check_value(v, f, full):
    k = f.kind
    if k == "String":
        ok = type(v) is str
    elif k in ("Integer", "Long"):
        # type(v) is int: rejects floats such as 3.0490406500944e+18 or 15.0, and booleans.
        ok = type(v) is int and INT64_MIN <= v <= INT64_MAX
    elif k == "Boolean":
        ok = type(v) is bool
    elif k == "Object":
        ok = type(v) is dict
        if ok:
            check_fields(v, f.fields, full + ".")
    elif k == "Array":
        ok = type(v) is list
        if ok and f.nonempty and not v:
            raise vfail(full, "required", "%s must not be empty" % full)
        if ok and f.items is not None:
            for i, item in enumerate(v):
                check_fields(item, f.items, "%s[%d]." % (full, i))
    else:
        raise AssertionError("unknown field kind " + k)
    if not ok:
        raise vfail(full, "type", "%s must be a JSON %s" % (full, {
            "String": "string", "Integer": "integer", "Long": "integer", "Boolean": "boolean",
            "Object": "object", "Array": "array"}[k]))


def parse_query(raw):
    pairs = []
    for piece in raw.split("&") if raw else []:
        if piece == "":
            continue
        name, _, value = piece.partition("=")
        try:
            pairs.append((urllib.parse.unquote_plus(name, errors="strict"),
                          urllib.parse.unquote_plus(value, errors="strict")))
        except UnicodeDecodeError:
            raise vfail(name, "type", "query parameter %s is not valid UTF-8" % name)
    return pairs


def check_query(pairs, spec):
    """spec: [(name, 'String'|'Integer'|'Long', required)].  Returns {name: value} with ints converted."""
    kinds = {name: (kind, req) for name, kind, req in spec}
    seen = {}
    for name, value in pairs:
        if name not in kinds:
            raise vfail(name, "unknown")
        if name in seen:
            raise vfail(name, "type", "%s is given more than once" % name)
        seen[name] = value
    out = {}
    for name, kind, req in spec:
        v = seen.get(name)
        if v is None or v == "":
            if req:
                raise vfail(name, "required")
            continue
        if kind in ("Integer", "Long"):
            if not INT_RE.fullmatch(v) or not INT64_MIN <= int(v) <= INT64_MAX:
                raise vfail(name, "type", "%s must be an integer" % name)
            v = int(v)
        out[name] = v
    return out


def strict_json(data):
    """Parse a request body: UTF-8, no duplicate keys, no NaN/Infinity.  Big ints stay exact."""
    def pairs_hook(pairs):
        obj = {}
        for k, v in pairs:
            if k in obj:
                raise ValueError("duplicate key " + k)
            obj[k] = v
        return obj

    def bad_constant(name):
        raise ValueError("invalid constant " + name)

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=pairs_hook, parse_constant=bad_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, "parameter_validation_failed", "request body is not valid JSON: %s" % e,
                       {"field": "body", "tag": "type"})


def paged(items, q):
    page_no, page_size = q.get("pageNo", 1), q.get("pageSize", 25)
    if page_no < 1:
        raise vfail("pageNo", "min")
    if page_size < 1:
        raise vfail("pageSize", "min")
    total = len(items)
    return {"count": total, "pageNo": page_no, "pageSize": page_size,
            "results": items[(page_no - 1) * page_size: page_no * page_size],
            "total": total, "totalPage": math.ceil(total / page_size)}


def envelope(result, status=200, code="success", message=""):
    return {"code": code, "detailMessage": message, "requestId": secrets.token_hex(16),
            "result": result, "status": status}


def json_bytes(obj):
    # Default separators (", " and ": "): matches the seed text, e.g. "purchaseParameterId": null.
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def lua_safe(obj):
    """Control-plane output only: integers beyond 2^53 become strings so cjson keeps them exact."""
    if type(obj) is int and abs(obj) > 2 ** 53:
        return str(obj)
    if isinstance(obj, dict):
        return {k: lua_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [lua_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------
# Request body specs
# ---------------------------------------------------------------------------

S, I, L, B = "String", "Integer", "Long", "Boolean"

ORDER_ITEM = {"serviceType": F(S, True), "serviceId": F(L, True), "connectionPlanId": F(L),
              "quantity": F(I), "purchaseType": F(S), "billingModel": F(S), "billingCycle": F(S),
              "multiCycle": F(I)}
CREATE_ORDER = {
    "operationType": F(S, True), "productNo": F(S), "productId": F(I, True), "assignId": F(S),
    "partnerId": F(S), "billingId": F(L, True), "poNumber": F(S),
    "serviceList": F("Array", True, items=ORDER_ITEM, nonempty=True),
    "orderPceSpecialRequest": F("Object", fields={"pbxName": F(S), "regionId": F(S), "pbxSubDomainId": F(S)}),
}
CALC_ITEM = dict(ORDER_ITEM, serviceType=F(S, True), pricingId=F(I, True), serviceId=F(L))
CALCULATE = {"productId": F(I, True), "productNo": F(S), "operationType": F(S, True),
             "serviceList": F("Array", True, items=CALC_ITEM, nonempty=True), "partnerView": F(S)}
ENABLE_AUTO_RENEW = {"productNo": F(S, True), "productId": F(S, True), "planOrServiceId": F(L, True)}
PROFILE = ["company", "firstName", "lastName", "phoneNumber", "stateProvince", "city", "street",
           "zipCode", "taxType", "taxNum", "remark"]
SAVE_USER = dict({k: F(S) for k in PROFILE}, userType=F(S, True), yeastarId=F(S, True),
                 company=F(S, True), country=F(S, True), sendUserActivationEmail=F(B))
EDIT_USER = dict({k: F(S) for k in PROFILE}, yeastarId=F(S, True), userType=F(S, True))
TAX_TYPES = ["VAT_number", "Tax_ID", "TIN_number", "RUC", "CUIT"]

# ---------------------------------------------------------------------------
# The portal model: data, tokens, faults, recording, stats
# ---------------------------------------------------------------------------


class Portal:
    def __init__(self, args, file_devices=()):
        self.args = args
        self.file_devices = file_devices   # from --devices: seeded again by every reset
        self.lock = threading.RLock()
        self.in_flight = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.config = {"token_lifetime": self.args.token_lifetime, "latency_ms": self.args.latency_ms,
                           "refresh_enabled": True, "billing_contacts": 1, "response_framing": "length"}
            self.chunked_responses = 0   # numbers chunked responses: every second one has a trailer
            self.today = today_utc()
            self.devices = seed_devices(self.today, self.file_devices)
            self.users = seed_users()
            self.orders = seed_orders()
            self.created = 0
            self.access = {}        # access token -> expiry (monotonic seconds)
            self.refresh = {}       # refresh token -> expiry
            self.faults = []
            self.recorded = []
            self.total = 0
            # in_flight is a live gauge of requests still being served, so it is not zeroed.
            self.max_in_flight = self.in_flight

    # ----- transport bookkeeping -----

    def begin(self, record):
        with self.lock:
            self.recorded.append(record)
            self.total += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self):
        with self.lock:
            self.in_flight -= 1

    def framing(self):
        """This response's framing, and for chunked ones the trailer field it ends with (or None)."""
        with self.lock:
            mode = self.config["response_framing"]
            if mode != "chunked":
                return mode, None
            self.chunked_responses += 1
            n = self.chunked_responses
            return mode, ("X-Portal-Trailer", "response-%d" % n) if n % 2 == 0 else None

    def take_fault(self, method, path):
        with self.lock:
            for f in self.faults:
                m = f.get("match") or {}
                if m.get("method") and m["method"].upper() != method:
                    continue
                if m.get("path") and m["path"] != path:
                    continue
                f["remaining"] -= 1
                if f["remaining"] <= 0:
                    self.faults.remove(f)
                return f
        return None

    # ----- API dispatch -----

    def handle(self, method, raw_path, query, headers, body):
        """Real processing of one API request -> (status, content_type, body_bytes)."""
        try:
            with self.lock:
                status, result = self.route(method, raw_path, query, headers, body)
            return status, JSON_TYPE, json_bytes(envelope(result, status))
        except ApiError as e:
            return e.status, JSON_TYPE, json_bytes(envelope(e.result, e.status, e.code, e.message))
        except Exception as e:  # a bug in the fake must show up as a 500, never kill the server
            if self.args.verbose:
                traceback.print_exc()
            return 500, JSON_TYPE, json_bytes(envelope(None, 500, "internal_error", "%s: %s" % (type(e).__name__, e)))

    def route(self, method, raw_path, query, headers, body):
        for rmethod, pattern, func, auth in ROUTES:
            m = pattern.fullmatch(raw_path)
            if not m:
                continue
            if rmethod != method:
                raise ApiError(405, "method_not_allowed", "%s is not allowed on %s" % (method, raw_path))
            if auth:
                self.authorize(headers)
            params = [urllib.parse.unquote(g) for g in m.groups()]
            ctx = {"method": method, "params": params, "pairs": parse_query(query), "headers": headers,
                   "body": body}
            return 200, func(self, ctx)
        raise ApiError(404, "not_found", "no such endpoint: %s %s" % (method, raw_path))

    def authorize(self, headers):
        values = [v for k, v in headers if k.lower() == "authorization"]
        if not values:
            raise ApiError(401, "unauthorized", "missing access token")
        if len(values) > 1 or not values[0].startswith("Bearer "):
            raise ApiError(401, "unauthorized", "Authorization must be 'Bearer <access_token>'")
        expiry = self.access.get(values[0][len("Bearer "):])
        if expiry is None:
            raise ApiError(401, "unauthorized", "invalid access token")
        if expiry <= time.monotonic():
            raise ApiError(401, "unauthorized", "access token expired")

    # ----- helpers used by endpoints -----

    def json_body(self, ctx, spec):
        ctype = next((v for k, v in ctx["headers"] if k.lower() == "content-type"), "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json, got %r" % ctype)
        if ctx["pairs"]:
            raise vfail(ctx["pairs"][0][0], "unknown")
        return check_fields(strict_json(ctx["body"]), spec)

    def product(self, product_id):
        if product_id not in PRODUCT_NAMES:
            raise not_found("product_not_found", "productId %s is not a product of the price list" % product_id)
        return product_id

    # One code (product_not_found) for every device the account cannot act on; the message says
    # which reason applies, so that a failed fleet run reads like one against the real portal.
    def device(self, product_no, product_id):
        d = self.devices.get(product_no)
        if d is None:
            raise not_found("product_not_found", "device %s is not in this account" % product_no)
        if d["productId"] != product_id:
            raise not_found("product_not_found", "product %s has productId %d, not %s"
                            % (product_no, d["productId"], product_id))
        if d["fail"]:
            raise not_found("product_not_found", "device %s was transferred to another partner account"
                            % product_no)
        return d

    def user(self, partner_id):
        for u in self.users:
            if u["partnerId"] == partner_id:
                return u
        raise not_found("user_not_found", "no subordinate user %s" % partner_id)

    def contacts(self):
        return [dict(c) for c in BILLING_CONTACTS[:self.config["billing_contacts"]]]

    def issue_tokens(self):
        now = time.monotonic()
        life = self.config["token_lifetime"]
        access, refresh = "AT." + secrets.token_hex(20), "RT." + secrets.token_hex(20)
        self.access[access] = now + life
        self.refresh[refresh] = now + REFRESH_LIFETIME
        # expiresIn is a String in the real API; whole seconds, rounded down.
        return {"expiresIn": str(max(0, int(life))), "refreshToken": refresh, "token": access, "tokenHead": "Bearer"}

    # ----- endpoints -----

    def ep_token(self, ctx):
        if ctx["pairs"]:
            raise vfail(ctx["pairs"][0][0], "unknown")
        ctype = next((v for k, v in ctx["headers"] if k.lower() == "content-type"), "")
        form = parse_form(ctype, ctx["body"])
        names = [k for k, _ in form]
        fields = dict(form)
        for name in names:
            if name not in ("grant_type", "client_id", "client_secret", "refresh_token"):
                raise vfail(name, "unknown")
            if names.count(name) > 1:
                raise vfail(name, "type", "%s is given more than once" % name)
        grant = fields.get("grant_type", "")
        if grant == "":
            raise vfail("grant_type", "required")
        if grant == "pp_credentials":
            for name in ("client_id", "client_secret"):
                if fields.get(name, "") == "":
                    raise vfail(name, "required")
            if "refresh_token" in fields:
                raise vfail("refresh_token", "unknown")
            self.check_client(fields)
            return self.issue_tokens()
        if grant == "refresh_token":
            rt = fields.get("refresh_token", "")
            if rt == "":
                raise vfail("refresh_token", "required")
            if "client_id" in fields or "client_secret" in fields:
                self.check_client(fields)   # the docs do not ask for them; if sent, they must be right
            if not self.config["refresh_enabled"]:
                raise ApiError(401, "invalid_grant", "refresh is disabled")
            expiry = self.refresh.pop(rt, None)   # rotation: a refresh token works once
            if expiry is None or expiry <= time.monotonic():
                raise ApiError(401, "invalid_grant", "unknown, used or expired refresh token")
            return self.issue_tokens()
        raise ApiError(400, "unsupported_grant_type", "grant_type %r is not supported" % grant)

    def check_client(self, fields):
        if fields.get("client_id") != self.args.client_id or fields.get("client_secret") != self.args.client_secret:
            raise ApiError(401, "invalid_client", "wrong client_id or client_secret")

    def ep_product_list(self, ctx):
        check_query(ctx["pairs"], [])
        return [{"name": name, "productId": pid} for pid, name in PRODUCTS]

    def ep_purchase_product_info(self, ctx):
        q = check_query(ctx["pairs"], [("productId", I, True), ("productNo", S, False)])
        pid = self.product(q["productId"])
        if "productNo" in q:
            self.device(q["productNo"], pid)
        plans, services = CATALOG.get(pid, ([], []))
        return {"offeringId": offering_id(pid),
                "planList": [{"name": n, "planId": i} for i, n in plans],
                "serviceList": [{"name": n, "pricingServiceId": p, "serviceId": i} for i, p, n in services]}

    def ep_plan_info(self, ctx):
        kind, pricing_plan_id = ctx["params"]
        q = check_query(ctx["pairs"], [("productId", I, True), ("productNo", S, kind == "renew")])
        pid = self.product(q["productId"])
        if "productNo" in q:
            self.device(q["productNo"], pid)
        if pricing_plan_id != "27901" or pid != 11:
            raise not_found("plan_not_found", "no pricing plan %s for productId %s" % (pricing_plan_id, pid))
        info = {"billingCycleList": ["monthly", "annually"], "billingModelList": ["recurring"],
                "name": "Enterprise Plan", "planId": "3048560232537899008", "pricingPlanId": 27901,
                "purchaseMultiCycleList": [1, 2, 3]}
        if kind == "trial":
            info["trialPeriod"] = 30
        return info

    def ep_add_on_info(self, ctx):
        kind, pricing_service_id = ctx["params"]
        if kind == "renew":
            spec = [("productNo", S, True), ("productId", I, True)]
        else:
            spec = [("productId", I, True), ("productNo", S, False), ("connectionPlanId", I, False)]
        q = check_query(ctx["pairs"], spec)
        pid = self.product(q["productId"])
        if "productNo" in q:
            self.device(q["productNo"], pid)
        if pricing_service_id != "27946" or pid != 11:
            raise not_found("service_not_found", "no pricing service %s for productId %s" % (pricing_service_id, pid))
        if kind == "renew":
            return copy.deepcopy(RENEW_ADD_ON_27946)
        info = copy.deepcopy(RENEW_ADD_ON_27946)
        info["purchaseMultiCycleList"] = [1, 2, 3]
        info["purchaseType"] = [kind]
        if kind == "trial":
            info.update(trialPeriod=30, trialPrice=0.0, trialQuantity=1)
        return dict(sorted(info.items()))

    def ep_my_price_info(self, ctx):
        q = check_query(ctx["pairs"], [("productId", I, True), ("offeringId", S, True),
                                       ("billingCycle", S, True), ("partnerId", S, False)])
        self.product(q["productId"])
        oneof("billingCycle", q["billingCycle"], BILLING_CYCLES)
        if "partnerId" in q:
            self.user(q["partnerId"])
        return {"offeringId": q["offeringId"],
                "planList": [{"currencyCode": "USD", "name": "Remote Management Account",
                              "planId": 3049036224189325312, "price": 60.0}],
                "serviceList": []}

    def ep_calculate(self, ctx):
        b = self.json_body(ctx, CALCULATE)
        self.product(b["productId"])
        oneof("operationType", b["operationType"], OPERATION_TYPES)
        if "productNo" in b:
            self.device(b["productNo"], b["productId"])
        for i, item in enumerate(b["serviceList"]):
            oneof("serviceList[%d].serviceType" % i, item["serviceType"], SERVICE_TYPES)
        return {"currencyCode": "USD", "totalPrice": 120.5}

    def device_record(self, d):
        record = {"activationCode": d["activationCode"], "activationStatus": "activated", "comment": "",
                  "createTime": d["createTime"], "productId": d["productId"], "productNo": d["productNo"]}
        if d["expiry"] is not None:   # "returned conditionally": a device without one omits it
            record["currentPlanExpireDate"] = d["expiry"]
        return record

    def ep_instance_product_list(self, ctx):
        q = check_query(ctx["pairs"], [("productId", I, True), ("pageNo", I, False), ("pageSize", I, False)])
        pid = self.product(q["productId"])
        return paged([self.device_record(d) for d in self.devices.values() if d["productId"] == pid], q)

    def ep_product_detail(self, ctx):
        q = check_query(ctx["pairs"], [("productNo", S, True), ("productId", I, True)])
        d = self.device(q["productNo"], q["productId"])
        # Modelled (the page is cut off after currentPlanExpireDate): the current plan's ID and name.
        details = dict(self.device_record(d), autoRenew=d["autoRenew"], planId=d["planId"])
        if d["planId"] in PLAN_NAMES:
            details["planName"] = PLAN_NAMES[d["planId"]]
        return dict(sorted(details.items()))

    def ep_product_model(self, ctx):
        q = check_query(ctx["pairs"], [("productId", I, True), ("productNo", S, True)])
        return {"productModel": self.device(q["productNo"], q["productId"])["model"]}

    def ep_region_list(self, ctx):
        check_query(ctx["pairs"], [])
        return copy.deepcopy(REGIONS)

    def ep_enable_auto_renew(self, ctx):
        b = self.json_body(ctx, ENABLE_AUTO_RENEW)
        if not INT_RE.fullmatch(b["productId"]):   # documented as a String holding a number ("12")
            raise vfail("productId", "type", "productId must be a string of digits")
        d = self.device(b["productNo"], int(b["productId"]))
        plan = b["planOrServiceId"]
        # Any plan or service of the product's catalog is accepted; a value mangled by a
        # double round trip (3049040650094403584 -> ...600) is not.
        if plan != d["planId"] and plan not in plan_ids(d["productId"]) | service_ids(d["productId"]):
            raise not_found("plan_not_found", "planOrServiceId %d is not a plan or service of productId %d"
                            % (plan, d["productId"]))
        d["autoRenew"] = True
        return True

    def ep_auto_renew_status(self, ctx):
        q = check_query(ctx["pairs"], [("productNo", S, True), ("productId", I, True)])
        return {"autoRenew": self.device(q["productNo"], q["productId"])["autoRenew"]}

    def ep_partner_list(self, ctx):
        check_query(ctx["pairs"], [])
        return copy.deepcopy(self.users)

    def ep_subordinate_user(self, ctx):
        check_query(ctx["pairs"], [])
        return dict(self.user(ctx["params"][0]))

    def ep_save_user(self, ctx):
        b = self.json_body(ctx, SAVE_USER)
        oneof("userType", b["userType"], ["Customer"])
        if not b.get("firstName") and not b.get("lastName"):
            raise vfail("firstName", "required", "firstName or lastName is required")
        if "taxType" in b:
            oneof("taxType", b["taxType"], TAX_TYPES)
        if any(u["partnerId"] == b["yeastarId"] for u in self.users):
            raise ApiError(400, "user_exists", "a user with yeastarId %s already exists" % b["yeastarId"],
                           {"field": "yeastarId", "tag": "unique"})
        user = {"partnerId": b["yeastarId"], "email": b["yeastarId"], "userType": "Enduser"}
        for k in ["firstName", "lastName", "company", "country", "stateProvince", "city", "street",
                  "zipCode", "phoneNumber", "taxNum", "remark"]:
            user[k] = b.get(k, "")
        self.users.append(user)
        return True

    def ep_edit_user(self, ctx):
        b = self.json_body(ctx, EDIT_USER)
        oneof("userType", b["userType"], ["Customer"])
        if "taxType" in b:
            oneof("taxType", b["taxType"], TAX_TYPES)
        user = self.user(b["yeastarId"])
        for k in PROFILE:
            if k in b and k != "taxType":
                user[k] = b[k]
        return True

    def ep_country_page(self, ctx):
        q = check_query(ctx["pairs"], [("pageNo", I, False), ("pageSize", I, False),
                                       ("sort", S, False), ("name", S, False)])
        sort = q.get("sort", "name")
        oneof("sort", sort, ["name", "-name"])
        rows = [{"code": c, "id": i, "name": n} for c, i, n in COUNTRIES
                if q.get("name", "").casefold() in n.casefold()]
        rows.sort(key=lambda r: r["name"].casefold(), reverse=sort == "-name")
        return paged(rows, q)

    def ep_billing_contacts(self, ctx):
        check_query(ctx["pairs"], [])
        return self.contacts()

    def ep_create_order(self, ctx):
        b = self.json_body(ctx, CREATE_ORDER)
        oneof("operationType", b["operationType"], OPERATION_TYPES)
        pid = self.product(b["productId"])
        if "productNo" in b:
            self.device(b["productNo"], pid)
        for field in ("partnerId", "assignId"):
            if field in b:
                self.user(b[field])
        billing = str(b["billingId"])
        if billing not in [c["billingContactId"] for c in self.contacts()]:
            raise ApiError(400, "billing_contact_not_found", "no billing contact %s" % billing,
                           {"field": "billingId", "tag": "exists"})
        for i, item in enumerate(b["serviceList"]):
            at = "serviceList[%d]." % i
            oneof(at + "serviceType", item["serviceType"], SERVICE_TYPES)
            for field, allowed in (("purchaseType", PURCHASE_TYPES), ("billingModel", BILLING_MODELS),
                                   ("billingCycle", BILLING_CYCLES)):
                if field in item:
                    oneof(at + field, item[field], allowed)
            # Exact membership catches IDs that lost precision on the way (e.g. through a double).
            if item["serviceType"] == "plan" and item["serviceId"] not in plan_ids(pid):
                raise not_found("plan_not_found", "%sserviceId %d is not a plan of productId %d" % (at, item["serviceId"], pid))
            if item["serviceType"] == "service" and item["serviceId"] not in service_ids(pid):
                raise not_found("service_not_found", "%sserviceId %d is not a service of productId %d" % (at, item["serviceId"], pid))
            if "connectionPlanId" in item and item["connectionPlanId"] not in plan_ids(pid):
                raise not_found("plan_not_found", "%sconnectionPlanId %d is not a plan of productId %d" % (at, item["connectionPlanId"], pid))
        n = self.created
        self.created += 1
        if n == 0:
            result = dict(FIRST_ORDER)
        else:
            result = {"instanceId": str(1946688 + n), "orderId": str(1780042 + n),
                      "orderNo": "MK%d" % (3400814131142238208 + n * 1000003), "orderStatus": "succeed",
                      "productNo": "3076913644890832896" if pid == 15 else str(3076913644890832896 + n),
                      "transactionNo": "IH%d" % (3400814132429889537 + n * 1000003)}
        if "productNo" in b:
            result["productNo"] = b["productNo"]
        self.orders.append({
            "id": result["orderId"], "orderNo": result["orderNo"], "instanceId": result["instanceId"],
            "transactionNo": result["transactionNo"], "orderStatus": result["orderStatus"],
            "createTime": int(time.time() * 1000), "poNumber": b.get("poNumber", ""), "productId": pid,
            "productNo": result["productNo"], "operationType": b["operationType"], "billingId": billing,
            "invoiceNo": "INV" + result["orderId"], "body": b})
        return result

    def ep_order_page(self, ctx):
        q = check_query(ctx["pairs"], [("pageNo", I, False), ("pageSize", I, False), ("sort", S, False)])
        sort = q.get("sort", "-id")   # default: newest first
        oneof("sort", sort, ["id", "-id"])
        rows = sorted(self.orders, key=lambda o: int(o["id"]), reverse=sort == "-id")
        return paged([{"createTime": o["createTime"], "currencyCode": "USD", "customReferenceNo": o["poNumber"],
                       "id": o["id"], "invoiceNo": o["invoiceNo"], "orderNo": o["orderNo"],
                       "orderStatus": o["orderStatus"], "productId": o["productId"], "productNo": o["productNo"]}
                      for o in rows], q)

    def ep_order_get(self, ctx):
        check_query(ctx["pairs"], [])
        key = ctx["params"][0]
        for o in self.orders:
            if key in (o["id"], o["orderNo"]):
                contact = next((c for c in BILLING_CONTACTS if c["billingContactId"] == o["billingId"]), BILLING_CONTACTS[0])
                return {
                    "basicInformation": {"productId": str(o["productId"]),
                                         "productName": PRODUCT_NAMES.get(o["productId"], ""),
                                         "productNo": o["productNo"]},
                    "billingInformation": {"billingContactId": contact["billingContactId"],
                                           "emailAddress": contact["emailAddress"]},
                    "orderInformation": {"createTime": o["createTime"], "customReferenceNo": o["poNumber"],
                                         "id": o["id"], "operationType": o["operationType"],
                                         "orderNo": o["orderNo"], "orderStatus": o["orderStatus"]},
                    "orderSummary": {"currencyCode": "USD", "totalAmount": 60.0}}
        raise not_found("order_not_found", "no order %s" % key)

    # ----- control plane -----

    def set_config(self, data):
        with self.lock:
            for k, v in data.items():
                if k == "token_lifetime" and is_number(v) and v >= 0:
                    self.config[k] = v
                elif k == "latency_ms" and is_number(v) and v >= 0:
                    self.config[k] = v
                elif k == "refresh_enabled" and type(v) is bool:
                    self.config[k] = v
                elif k == "billing_contacts" and v in (1, 2) and type(v) is not bool:
                    self.config[k] = int(v)
                elif k == "response_framing" and v in FRAMINGS:
                    self.config[k] = v
                else:
                    raise ControlError("bad config entry %s=%r" % (k, v))
            return dict(self.config)

    def expire_tokens(self):
        with self.lock:
            now = time.monotonic()
            for t in self.access:
                self.access[t] = now
            return {"expired": len(self.access)}

    def add_fault(self, data):
        f = normalize_fault(data)
        with self.lock:
            self.faults.append(f)
            return {"queued": len(self.faults)}

    def add_fleet(self, data):
        allowed = {"count", "product_id", "fail_every", "prefix"}
        for k in data:
            if k not in allowed:
                raise ControlError("unknown fleet field " + k)
        count, pid = data.get("count"), data.get("product_id", 12)
        fail_every, prefix = data.get("fail_every", 0), data.get("prefix", "FLEET")
        if not is_int(count) or count < 0 or not is_int(pid) or pid not in PRODUCT_NAMES \
                or not is_int(fail_every) or fail_every < 0 or type(prefix) is not str:
            raise ControlError("fleet needs count >= 0, a known product_id, fail_every >= 0, a string prefix")
        plans = CATALOG.get(pid, ([], []))[0]
        plan = 3049040650094403584 if pid == 12 or not plans else plans[0][0]
        out = []
        with self.lock:
            for i in range(1, int(count) + 1):
                no = "%s%06d" % (prefix, i)
                self.devices[no] = dict(dated(make_device(no, pid, i % 2 == 0, plan, "FLEET",
                                                          fail=fail_every > 0 and i % fail_every == 0), self.today),
                                        activationCode="ACF%06d" % i, createTime=1717200000000 + i * 1000)
                out.append({"productNo": no, "productId": pid, "planOrServiceId": plan})
        return {"devices": out}

    def add_devices(self, data):
        """POST /_control/devices {"devices": [...]}: the objects of a JSON devices file."""
        for k in data:
            if k != "devices":
                raise ControlError("unknown devices field " + k)
        items = data.get("devices")
        if type(items) is not list:
            raise ControlError("devices takes {\"devices\": [device objects]}")
        try:
            added = devices_from_list(items, lambda i: "device %d" % (i + 1))
        except DeviceError as e:
            raise ControlError(str(e))
        with self.lock:
            for d in added:
                self.devices[d["productNo"]] = dated(d, self.today)
        return {"devices": [{"productNo": d["productNo"], "productId": d["productId"],
                             "planOrServiceId": d["planId"]} for d in added]}

    def stats(self):
        with self.lock:
            return {"total": self.total, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}

    def state(self):
        with self.lock:
            return {"today": self.today.isoformat(),
                    "devices": {no: {k: d[k] for k in ("productId", "planId", "autoRenew", "model", "expiry")
                                     if d[k] is not None}
                                for no, d in self.devices.items()},
                    "orders": [copy.deepcopy(o) for o in self.orders if o["body"] is not None],
                    "users": copy.deepcopy(self.users)}


def parse_form(ctype, body):
    """Token endpoint body: urlencoded or multipart/form-data -> [(name, value)]."""
    kind = ctype.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            return urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                          strict_parsing=bool(body), errors="strict")
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, "parameter_validation_failed", "malformed form body: %s" % e,
                           {"field": "body", "tag": "type"})
    if kind == "multipart/form-data":
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
        if not msg.is_multipart():
            raise ApiError(400, "parameter_validation_failed", "malformed multipart body",
                           {"field": "body", "tag": "type"})
        out = []
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            out.append((name or "", (part.get_payload(decode=True) or b"").decode("utf-8", "replace")))
        return out
    raise ApiError(415, "unsupported_media_type",
                   "the token endpoint takes application/x-www-form-urlencoded or multipart/form-data, got %r" % ctype)


def route(method, path, func, auth=True):
    return (method, re.compile(path), func, auth)


SEG = "([^/]+)"
ROUTES = [
    route("POST", "/auth/openapi/v1/oauth/token", Portal.ep_token, auth=False),
    route("GET", "/pricing/openapi/purchase/v1/product_list", Portal.ep_product_list),
    route("GET", "/pricing/openapi/purchase/v1/purchase_product_info", Portal.ep_purchase_product_info),
    route("GET", "/pricing/openapi/purchase/v1/(trial|purchase|renew)/plan_info/" + SEG, Portal.ep_plan_info),
    route("GET", "/pricing/openapi/purchase/v1/(trial|purchase|renew)/add_on_info/" + SEG, Portal.ep_add_on_info),
    route("GET", "/pricing/openapi/purchase/v1/my_price_info", Portal.ep_my_price_info),
    route("POST", "/pricing/openapi/purchase/v1/pricing/calculate", Portal.ep_calculate),
    route("GET", "/product/openapi/instance_product/v1/client/instance_product_list", Portal.ep_instance_product_list),
    route("GET", "/product/openapi/instance_product/v1/detail", Portal.ep_product_detail),
    route("GET", "/product/openapi/instance/v1/product_model", Portal.ep_product_model),
    route("GET", "/product/openapi/instance/v1/region_list", Portal.ep_region_list),
    route("POST", "/product/openapi/instance_subscription/v1/active", Portal.ep_enable_auto_renew),
    route("GET", "/order/openapi/order/v1/check/existed_auto_renew", Portal.ep_auto_renew_status),
    route("GET", "/user/openapi/user/v1/client/partner_list", Portal.ep_partner_list),
    route("GET", "/user/openapi/user/v1/subordinate_user/" + SEG, Portal.ep_subordinate_user),
    route("POST", "/user/openapi/user/v1/client/save_user", Portal.ep_save_user),
    route("POST", "/user/openapi/user/v1/client/edit_user", Portal.ep_edit_user),
    route("GET", "/user/openapi/area/v1/page", Portal.ep_country_page),
    route("GET", "/user/openapi/user/v1/client/billing_contact_list", Portal.ep_billing_contacts),
    route("POST", "/order/openapi/order/v1/save", Portal.ep_create_order),
    route("GET", "/order/openapi/order/v1/page", Portal.ep_order_page),
    route("GET", "/order/openapi/order/v1/get/" + SEG, Portal.ep_order_get),
]

# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------


class ControlError(Exception):
    pass


def is_number(v):
    return type(v) in (int, float) and math.isfinite(v)


def is_int(v):
    # cjson may encode a Lua float 3.0 as "3"; Python then sees an int, which is what we want.
    return type(v) is int or (type(v) is float and v.is_integer())


FAULT_FIELDS = {"match", "count", "status", "envelope", "code", "retry_after", "html", "body",
                "content_type", "delay", "drop", "process", "truncate", "large_body_bytes", "trickle",
                "raw_b64", "echo"}
DEFAULT_CODES = {400: "parameter_validation_failed", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 408: "request_timeout", 429: "too_many_requests", 500: "internal_error", 502: "bad_gateway",
                 503: "service_unavailable", 504: "gateway_timeout"}


def normalize_fault(data):
    if type(data) is not dict:
        raise ControlError("fault must be a JSON object")
    for k in data:
        if k not in FAULT_FIELDS:
            raise ControlError("unknown fault field " + k)
    f = dict(data)
    m = f.get("match") or {}
    if type(m) is not dict or any(k not in ("method", "path") or type(v) is not str for k, v in m.items()):
        raise ControlError("match takes {method, path} strings")
    f["match"] = m
    f["remaining"] = int(f.get("count", 1)) if is_int(f.get("count", 1)) else 0
    if f["remaining"] < 1:
        raise ControlError("count must be a positive integer")
    for k in ("envelope", "drop", "process", "truncate", "echo"):
        if k in f and type(f[k]) is not bool:
            raise ControlError(k + " must be a boolean")
    for k in ("code", "retry_after", "html", "body", "content_type", "raw_b64"):
        if k in f and type(f[k]) is not str:
            raise ControlError(k + " must be a string")
    if "status" in f and not (is_int(f["status"]) and 100 <= f["status"] <= 599):
        raise ControlError("status must be an HTTP status code")
    if "delay" in f and not (is_number(f["delay"]) and f["delay"] >= 0):
        raise ControlError("delay must be seconds >= 0")
    if "large_body_bytes" in f and not (is_int(f["large_body_bytes"]) and f["large_body_bytes"] > 0):
        raise ControlError("large_body_bytes must be a positive integer")
    if "trickle" in f and not (f["trickle"] is True or f["trickle"] is False
                               or (is_number(f["trickle"]) and f["trickle"] > 0)):
        raise ControlError("trickle is true or an interval in seconds")
    if f.get("trickle") is True:
        f["trickle"] = 0.5
    return f


def canned_response(f):
    """The response a fault substitutes for the real one, or None when the real one is sent."""
    if "body" in f:
        return int(f.get("status", 200)), f.get("content_type", "application/json"), f["body"].encode("utf-8")
    if "html" in f:
        return int(f.get("status", 502)), "text/html; charset=utf-8", f["html"].encode("utf-8")
    if "status" in f or "code" in f:
        status = int(f.get("status", 500))
        if not f.get("envelope", True):
            return status, "text/plain; charset=utf-8", b""
        code = f.get("code") or DEFAULT_CODES.get(status, "error")
        return status, JSON_TYPE, json_bytes(envelope(None, status, code, "injected fault: %s" % code))
    return None

# ---------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, addr, handler, portal, ssl_context=None):
        self.portal = portal
        self.ssl_context = ssl_context
        super().__init__(addr, handler)

    def server_bind(self):
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can hang in a sandbox.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ssl_context is not None:
            # The handshake happens later, in the handler thread: a slow or broken client
            # must never block accept() for everybody else.
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        # Rejected certificates, resets and timeouts are normal here; stay silent unless asked.
        if self.portal.args.verbose:
            exc = sys.exc_info()[1]
            print("portal: connection from %s:%s ended: %r" % (client_address[0], client_address[1], exc),
                  file=sys.stderr, flush=True)


class BaseHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeYeastarPortal/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(HANDSHAKE_TIMEOUT)
            self.request.do_handshake()
        super().setup()

    def log_message(self, fmt, *args):
        pass  # quiet by default; --verbose logs one line per request in serve()

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te == "chunked":
            chunks = []
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        n = int(length)
        if n < 0:
            raise ValueError("negative Content-Length")
        data = self.rfile.read(n)
        if len(data) != n:
            raise ValueError("short body")
        return data

    framing, trailer = "length", None   # ApiHandler sets them per response

    def head_bytes(self, status, ctype, length, extra=()):
        lines = ["HTTP/1.1 %d %s" % (status, self.responses.get(status, ("Unknown",))[0]),
                 "Server: " + self.server_version, "Date: " + self.date_time_string(),
                 "Content-Type: " + ctype]
        if self.framing == "length":
            lines.append("Content-Length: %d" % length)
        elif self.framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
            if self.trailer:
                lines.append("Trailer: " + self.trailer[0])
        lines += ["%s: %s" % kv for kv in extra]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def write(self, data):
        self.wrote = True
        try:
            self.wfile.write(data)
            return True
        except OSError:   # includes ssl.SSLError: the client went away
            self.close_connection = True
            return False


class ApiHandler(BaseHandler):
    def do_GET(self):
        self.serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def serve(self):
        portal = self.server.portal
        started = time.monotonic()
        raw_path, _, query = self.path.partition("?")
        self.framing, self.trailer = portal.framing()
        if self.framing == "chunked" and self.request_version != "HTTP/1.1":
            self.framing, self.trailer = "close", None
        self.close_notify = False
        if self.framing == "close":
            self.close_connection = True
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self.send_full(400, "text/plain", b"")
            self.finish_close_delimited()
            return
        headers = list(self.headers.items())   # exact received order and case
        portal.begin({"method": self.command, "path": raw_path, "query": query,
                      "headers": [[k, v] for k, v in headers],
                      "body_b64": base64.b64encode(body).decode("ascii"),
                      "port": self.server.server_address[1]})
        outcome = "?"
        self.wrote = False
        try:
            outcome = self.respond(portal, raw_path, query, headers, body)
        except Exception as e:   # a bug outside the endpoint code: still a 500 envelope, never a crash
            if portal.args.verbose:
                traceback.print_exc()
            outcome = "500 (%s)" % type(e).__name__
            if not self.wrote:
                self.close_connection = True
                self.send_full(500, JSON_TYPE, json_bytes(envelope(None, 500, "internal_error",
                                                                   "%s: %s" % (type(e).__name__, e))))
        finally:
            portal.end()
            if portal.args.verbose:
                shown = [(k, "[redacted]" if k.lower() == "authorization" else v) for k, v in headers]
                print("portal: %s %s%s -> %s (%.0f ms) headers=%s" % (
                    self.command, raw_path, "?" + query if query else "", outcome,
                    (time.monotonic() - started) * 1000, shown), file=sys.stderr, flush=True)
            self.finish_close_delimited()

    def respond(self, portal, raw_path, query, headers, body):
        latency = portal.config["latency_ms"] / 1000.0
        if latency > 0:
            time.sleep(latency)

        def real():
            return portal.handle(self.command, raw_path, query, headers, body)

        f = portal.take_fault(self.command, raw_path)
        if f is None:
            status, ctype, data = real()
            self.send_full(status, ctype, data)
            return status

        result = real() if f.get("process") else None
        if f.get("delay"):
            time.sleep(f["delay"])
        if f.get("drop"):
            self.close_connection = True     # read everything, answer nothing
            return "dropped"
        if "raw_b64" in f:                   # hostile server: these exact bytes, then close
            self.close_connection = True
            data = base64.b64decode(f["raw_b64"])
            if f.get("trickle"):
                for i in range(len(data)):
                    if not self.write(data[i:i + 1]):
                        break
                    time.sleep(f["trickle"])
            else:
                self.write(data)
            return "raw"
        if f.get("echo"):                    # hostile server: every envelope field echoes the request
            text = "%s %s?%s\n%s\n\n%s" % (self.command, raw_path, query,
                                           "\n".join("%s: %s" % kv for kv in headers),
                                           body.decode("utf-8", "replace"))
            status = int(f.get("status", 400))
            env = {"code": text, "detailMessage": text, "requestId": text, "status": status, "result": text}
            self.send_full(status, JSON_TYPE, json_bytes(env))
            return "%d echoed" % status
        extra = [("Retry-After", f["retry_after"])] if "retry_after" in f else []
        if "large_body_bytes" in f and canned_response(f) is None:
            self.send_large(int(f["large_body_bytes"]), extra)
            return "large body"
        response = canned_response(f) or result or real()
        status, ctype, data = response
        if f.get("truncate"):
            self.close_connection = True
            framed = self.framed_body(data)
            self.write(self.head_bytes(status, ctype, len(data), extra) + framed[:len(framed) // 2])
            self.close_notify = False        # an abrupt close: over TLS, detectably truncated
            return "%d truncated" % status
        if f.get("trickle"):
            packet = self.head_bytes(status, ctype, len(data), extra) + self.framed_body(data)
            for i in range(len(packet)):
                if not self.write(packet[i:i + 1]):
                    break
                time.sleep(f["trickle"])
            self.end_body()
            return "%d trickled" % status
        self.send_full(status, ctype, data, extra)
        return "%d faulted" % status

    # ----- response framing (see the module docstring) -----

    def chunk(self, data, index=0):
        """One chunk of the chunked framing ("" for no data: a zero size would end the body)."""
        if not data:
            return b""
        size = ("%X" if self.trailer else "%x") % len(data)
        ext = ";portal-ext=1" if self.trailer and index == 0 else ""
        return (size + ext + "\r\n").encode("ascii") + data + b"\r\n"

    def last_chunk(self):
        fields = "%s: %s\r\n" % self.trailer if self.trailer else ""
        return ("0\r\n" + fields + "\r\n").encode("latin-1")

    def framed_body(self, data):
        """The whole body as it goes on the wire in this response's framing."""
        if self.framing != "chunked":
            return data
        out, i, k = [], 0, 0
        while i < len(data):
            size = CHUNK_SIZES[k % len(CHUNK_SIZES)]
            out.append(self.chunk(data[i:i + size], k))
            i, k = i + size, k + 1
        out.append(self.last_chunk())
        return b"".join(out)

    def end_body(self):
        """After the last body byte: a close-delimited body ends with the connection."""
        if self.framing == "close":
            self.close_connection = True
            self.close_notify = True

    def finish_close_delimited(self):
        """Ends a close-delimited response over TLS with close_notify, so that the client can tell
        the end of the body from a truncation (an abrupt close, as truncate does)."""
        if not self.close_notify:
            return
        self.close_notify = False
        conn = self.connection
        if isinstance(conn, ssl.SSLSocket):
            try:
                conn.settimeout(CLOSE_NOTIFY_TIMEOUT)
                conn.unwrap()   # sends close_notify, then waits briefly for the client's
            except (OSError, ValueError):
                pass

    def send_full(self, status, ctype, data, extra=()):
        self.write(self.head_bytes(status, ctype, len(data), extra) + self.framed_body(data))
        self.end_body()

    def send_large(self, size, extra):
        prefix = ('{"code":"success","detailMessage":"","requestId":"%s","result":"' % secrets.token_hex(16)).encode()
        suffix = b'","status":200}'
        filler = max(0, size - len(prefix) - len(suffix))
        body_len = len(prefix) + filler + len(suffix)
        chunked = self.framing == "chunked"   # then one chunk per write
        piece = (lambda data, k: self.chunk(data, k)) if chunked else (lambda data, k: data)
        if not self.write(self.head_bytes(200, JSON_TYPE, body_len, extra) + piece(prefix, 0)):
            return
        block = b"x" * 65536
        while filler > 0:
            n = min(filler, len(block))
            if not self.write(piece(block[:n], 1)):
                return   # the client hung up: stop quietly
            filler -= n
        self.write(piece(suffix, 1) + (self.last_chunk() if chunked else b""))
        self.end_body()


class ControlHandler(BaseHandler):
    def do_GET(self):
        self.serve()

    do_POST = do_GET

    def serve(self):
        portal = self.server.portal
        path = self.path.partition("?")[0]
        try:
            raw = self.read_body()
            data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
            status, out = 200, self.dispatch(portal, self.command, path, data)
        except (ControlError, ValueError) as e:
            status, out = 400, {"error": str(e)}
        except Exception as e:  # never let the control plane crash the portal either
            status, out = 500, {"error": "%s: %s" % (type(e).__name__, e)}
        if portal.args.verbose:
            print("portal: control %s %s -> %d" % (self.command, path, status), file=sys.stderr, flush=True)
        data = json.dumps(lua_safe(out), ensure_ascii=False).encode("utf-8")
        self.write(self.head_bytes(status, "application/json", len(data)) + data)

    def dispatch(self, portal, method, path, data):
        routes = {
            ("POST", "/_control/reset"): lambda: (portal.reset(), {"ok": True})[1],
            ("POST", "/_control/config"): lambda: portal.set_config(data),
            ("GET", "/_control/config"): lambda: dict(portal.config),
            ("POST", "/_control/expire_tokens"): portal.expire_tokens,
            ("POST", "/_control/fault"): lambda: portal.add_fault(data),
            ("GET", "/_control/requests"): lambda: list(portal.recorded),
            ("GET", "/_control/stats"): portal.stats,
            ("POST", "/_control/fleet"): lambda: portal.add_fleet(data),
            ("POST", "/_control/devices"): lambda: portal.add_devices(data),
            ("GET", "/_control/state"): portal.state,
        }
        if (method, path) not in routes:
            raise ControlError("no control endpoint %s %s" % (method, path))
        if type(data) is not dict:
            raise ControlError("control bodies are JSON objects")
        return routes[(method, path)]()

# ---------------------------------------------------------------------------
# Certificates (openssl CLI, EC P-256: fast)
# ---------------------------------------------------------------------------


# The good certificate names 127.0.0.1 twice: as an IP address (curl, browsers) and as a DNS
# name, because nginx's cosocket verification (sslhandshake(nil, "127.0.0.1", true) in
# lua-nginx-module) checks the name with X509_check_host, which matches DNS names only.
OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_good]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_wrong]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class Stopped(Exception):
    """SIGTERM or SIGINT arrived during start-up."""


# The child process running now (openssl, during start-up), so that a stop request stops it
# too instead of leaving it to finish on its own; and the stop request itself.
CHILD = None
STOP = threading.Event()


def request_stop(*_):
    STOP.set()
    child = CHILD
    if child is not None and child.poll() is None:
        child.terminate()


def make_certs(d):
    def path(name):
        return os.path.join(d, name)

    def run(*args):
        global CHILD
        if STOP.is_set():
            raise Stopped()
        CHILD = subprocess.Popen(["openssl"] + list(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = CHILD.communicate()
        code, CHILD = CHILD.returncode, None
        if STOP.is_set():
            raise Stopped()
        if code != 0:
            raise subprocess.CalledProcessError(code, ["openssl"] + list(args), stderr=err)

    with open(path("openssl.cnf"), "w") as fh:
        fh.write(OPENSSL_CNF)
    cnf = path("openssl.cnf")
    for key in ("ca.key", "other-ca.key", "server.key"):
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path(key))
    for key, pem, cn in (("ca.key", "ca.pem", "Fake Yeastar Portal Test CA"),
                         ("other-ca.key", "other-ca.pem", "Unrelated Test CA")):
        run("req", "-config", cnf, "-x509", "-new", "-key", path(key), "-subj", "/CN=" + cn,
            "-days", "3650", "-extensions", "v3_ca", "-out", path(pem))
    run("req", "-config", cnf, "-new", "-key", path("server.key"), "-subj", "/CN=localhost", "-out", path("server.csr"))
    # -days -1 gives notAfter one day before notBefore (= now): a really expired certificate.
    for pem, days, ext, serial in (("server.pem", "825", "v3_good", "1001"),
                                   ("expired.pem", "-1", "v3_good", "1002"),
                                   ("wrong-host.pem", "825", "v3_wrong", "1003")):
        run("x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
            "-set_serial", serial, "-days", days, "-extfile", cnf, "-extensions", ext, "-out", path(pem))
    return {name: path(name) for name in ("ca.pem", "other-ca.pem", "server.key", "server.pem",
                                          "expired.pem", "wrong-host.pem")}


def tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def describe_running(state_dir):
    """What the portal.pid and portal.json of a running portal say, for a refusal message."""
    try:
        with open(os.path.join(state_dir, "portal.pid")) as fh:
            text = "pid %s" % fh.read().strip()
    except OSError:
        text = "still starting"
    try:
        with open(os.path.join(state_dir, "portal.json")) as fh:
            info = json.load(fh)
        text += ", API %s, control %s" % (info["base_url"], info["control_url"])
    except (OSError, ValueError, KeyError):
        pass
    return text


def process_start_time(pid):
    """The start time of a live process (field 22 of /proc/PID/stat), None if gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def main():
    ap = argparse.ArgumentParser(description="Fake Yeastar Partner Portal OpenAPI for tests and rehearsals.")
    ap.add_argument("--state-dir", required=True, help="where certificates and portal.json are written")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="API (HTTPS) port, 0 = any free port")
    ap.add_argument("--control-port", type=int, default=0, help="control plane (plain HTTP) port, 0 = any")
    ap.add_argument("--token-lifetime", type=float, default=1800, help="access token lifetime in seconds")
    ap.add_argument("--latency-ms", type=float, default=0, help="added to every API request")
    ap.add_argument("--client-id", default="yp-demo-client")
    ap.add_argument("--client-secret", default="yp-demo-secret-5f2b9c")
    ap.add_argument("--verbose", action="store_true", help="log one line per request (Authorization redacted)")
    ap.add_argument("--owner-pid", type=int, default=0,
                    help="exit when this process ends (test runners: no orphan even if they crash)")
    ap.add_argument("--devices", metavar="FILE",
                    help="more devices: CSV with the header productNo,productId,planId,autoRenew[,model][,expiry]"
                         ", or a JSON list of such objects (a name ending in .json); expiry is YYYY-MM-DD, "
                         "+N or -N days from the portal's today (UTC, at start and at every reset), or none "
                         "(default +365)")
    args = ap.parse_args()

    # Installed first, so a SIGTERM even during start-up ends in the same clean exit.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    # A bad file is refused before anything is written; exit status 2, as for a bad option.
    try:
        file_devices = load_devices(args.devices) if args.devices else []
    except DeviceError as e:
        print("portal: %s" % e, file=sys.stderr)
        sys.exit(2)

    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    # One portal per state dir: a second one would replace the first one's CA (its clients
    # would stop trusting it), its pid file and portal.json.  The lock is held until this
    # process ends, however it ends, so a crashed portal never blocks the next start.
    lock = open(os.path.join(state_dir, "portal.lock"), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit("portal: %s is in use by another fake portal (%s); stop that one first, or give "
                 "this one another --state-dir" % (state_dir, describe_running(state_dir)))
    # Our own PID, first thing: whoever started us may only know a wrapper's PID (a pyenv
    # shim forks python), and must be able to stop us even if start-up fails half way.
    with open(os.path.join(state_dir, "portal.pid.tmp"), "w") as fh:
        fh.write("%d\n" % os.getpid())
    os.replace(os.path.join(state_dir, "portal.pid.tmp"), os.path.join(state_dir, "portal.pid"))
    try:
        certs = make_certs(state_dir)
    except subprocess.CalledProcessError as e:
        sys.exit("portal: openssl failed: %s\n%s" % (" ".join(e.cmd), e.stderr.decode(errors="replace")))
    except Stopped:
        sys.exit(0)

    portal = Portal(args, file_devices)
    key = certs["server.key"]
    try:
        servers = [
            QuietServer((args.host, args.port), ApiHandler, portal, tls_context(certs["server.pem"], key)),
            QuietServer((args.host, 0), ApiHandler, portal, tls_context(certs["expired.pem"], key)),
            QuietServer((args.host, 0), ApiHandler, portal, tls_context(certs["wrong-host.pem"], key)),
            QuietServer((args.host, args.control_port), ControlHandler, portal),
        ]
    except OSError as e:
        sys.exit("portal: cannot listen on %s (port %d, control port %d): %s"
                 % (args.host, args.port, args.control_port, e.strerror or e))
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    port, expired_port, wrong_port, control_port = (s.server_address[1] for s in servers)
    base_url = "https://%s:%d" % (args.host, port)
    info = {"pid": os.getpid(), "base_url": base_url, "port": port,
            "control_url": "http://%s:%d" % (args.host, control_port), "control_port": control_port,
            "ca_file": certs["ca.pem"], "other_ca_file": certs["other-ca.pem"],
            "expired_url": "https://%s:%d" % (args.host, expired_port),
            "wrong_host_url": "https://%s:%d" % (args.host, wrong_port),
            "client_id": args.client_id, "client_secret": args.client_secret, "state_dir": state_dir}
    info_path = os.path.join(state_dir, "portal.json")
    with open(info_path + ".tmp", "w") as fh:
        json.dump(info, fh, indent=2)
    os.replace(info_path + ".tmp", info_path)   # readers never see a half-written file

    q = shlex.quote
    devices = "%d (%d from %s)" % (len(portal.devices), len(file_devices), args.devices) if args.devices \
        else "%d (the seed devices)" % len(portal.devices)
    print("Fake Yeastar Partner Portal is running (pid %d). Nothing here costs money.\n"
          "  API base URL  : %s\n"
          "  CA file       : %s\n"
          "  Client ID     : %s\n"
          "  Client secret : %s\n"
          "  Control plane : %s  (POST /_control/reset, /_control/fault, ...: see the README)\n"
          "  Devices       : %s\n"
          "Paste into your shell:\n"
          "export YEASTAR_BASE_URL=%s\n"
          "export YEASTAR_CA_FILE=%s\n"
          "export YEASTAR_CLIENT_ID=%s\n"
          "export YEASTAR_CLIENT_SECRET=%s\n"
          "export YEASTAR_CONTROL_URL=%s\n"
          "Stop with Ctrl-C or SIGTERM."
          % (os.getpid(), base_url, certs["ca.pem"], args.client_id, args.client_secret, info["control_url"],
             devices, q(base_url), q(certs["ca.pem"]), q(args.client_id), q(args.client_secret),
             q(info["control_url"])), flush=True)

    owner_started = process_start_time(args.owner_pid) if args.owner_pid else None
    while not STOP.wait(0.5):
        # The owner is gone (or its PID now names another process): nobody will stop us.
        if owner_started is not None and process_start_time(args.owner_pid) != owner_started:
            break
    # Stop all four loops at once rather than one poll interval after another.
    stoppers = [threading.Thread(target=s.shutdown) for s in servers]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()
    for s in servers:
        s.server_close()
    try:
        os.remove(info_path)   # portal.json means "running"; do not leave a stale one
    except OSError:
        pass


if __name__ == "__main__":
    main()
