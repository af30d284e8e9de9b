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
  YP_TOKEN = 1 << 2       /* the token endpoint: form body, no bearer token */
};

typedef struct yp_endpoint {
  const char *name;   /* the Lua method name */
  const char *method; /* "GET" or "POST" */
  const char *path;   /* template; {name} is replaced by the path parameter of that name */
  unsigned flags;
  const yp_field *params; /* terminated by a NULL name; order = order on the wire */
} yp_endpoint;

extern const yp_endpoint yp_endpoints[];
extern const size_t yp_endpoint_count;
#define YP_TOKEN_ENDPOINT (&yp_endpoints[0])
#define YP_REFRESH_ENDPOINT (&yp_endpoints[1])

const yp_endpoint *yp_find_endpoint(const char *name);

#endif
