/* endpoints.h: the shape of an endpoint descriptor and the table of all of them.
 * One entry per Partner Portal operation drives registration, validation and encoding. */
#ifndef YP_ENDPOINTS_H
#define YP_ENDPOINTS_H

#include <stddef.h>

enum yp_place { YP_PATH = 1, YP_QUERY, YP_BODY };

enum yp_type {
  YP_STRING = 1, /* JSON string; a Lua integer is accepted and sent as its decimal text */
  YP_INTEGER,    /* JSON integer with every digit; Lua integer, decimal string or exact float */
  YP_BOOLEAN,
  YP_OBJECT,     /* members described by `fields` */
  YP_LIST        /* non-empty array of objects described by `fields` */
};

typedef struct yp_field {
  const char *name;
  unsigned char place;
  unsigned char type;
  unsigned char required;
  const struct yp_field *fields; /* for YP_OBJECT and YP_LIST; terminated by a NULL name */
} yp_field;

enum yp_endpoint_flags {
  /* Re-sending after an unknown outcome cannot do harm (reads, idempotent actions). An endpoint
   * without it is never re-sent once its bytes may have reached the server. */
  YP_REPLAY_SAFE = 1 << 0,
  YP_PAGED = 1 << 1,      /* takes pageNo/pageSize and returns {results, totalPage, ...} */
  YP_TOKEN = 1 << 2,      /* the token endpoint: form body, no bearer token */
  /* The guide does not show this result: `returns` is the project's assumption (REFERENCE.md's
   * "modelled shapes", and what the fake portal answers), to check against the live API. */
  YP_MODELLED = 1 << 3
};

typedef struct yp_endpoint {
  const char *name;   /* the Lua method name */
  const char *method; /* "GET" or "POST" */
  const char *path;   /* template; {name} is replaced by the path parameter of that name */
  unsigned flags;
  const yp_field *params; /* terminated by a NULL name; order = order on the wire */
  /* Documentation, as data next to the code it describes (README reference, LuaLS types): */
  const char *title;   /* the operation's name in Yeastar's guide */
  const char *returns; /* the shape of `result`, in the notation below */
  const char *example; /* "local name, err = client:method ...", runnable on the fake portal */
} yp_endpoint;

/* Shape notation for `returns` (read by tools/shape.lua; the README explains it to users):
 *   string, integer, number, boolean, null   a JSON value as decoded (null is partner.null)
 *   id       a 64-bit ID: a Lua integer, or an exact decimal string where it does not fit
 *   [T]      a JSON array of T
 *   {a: T, b?: T}   an object with these members; b may be missing
 *   {a: T, ...}     ...and possibly more members, which the guide does not show
 *   {...}    an object whose members the guide does not show
 *   T|U      either */

/* Where a parameter's value comes from: "method path" names a member of that method's result
 * (path in the notation above: [] steps into an array); alternatives are joined by " or ". */
typedef struct yp_source {
  const char *param;    /* parameter or member name */
  const char *endpoint; /* only for this method; NULL: wherever the name appears */
  const char *from;
} yp_source;

extern const yp_endpoint yp_endpoints[];
extern const size_t yp_endpoint_count;
#define YP_TOKEN_ENDPOINT (&yp_endpoints[0])
#define YP_REFRESH_ENDPOINT (&yp_endpoints[1])

const yp_endpoint *yp_find_endpoint(const char *name);
/* The source of parameter `param` of `endpoint`, or NULL when the caller makes it up. */
const char *yp_param_source(const char *endpoint, const char *param);

#endif
