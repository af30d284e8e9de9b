/* version.h: the single source of the module's version string.
 * The rockspec's file name and `version` field must match it (spec/01-build_spec.lua checks). */
#ifndef YP_VERSION_H
#define YP_VERSION_H
#define YP_VERSION "0.1.0"
#endif
