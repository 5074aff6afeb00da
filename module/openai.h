/* openai: a small, conservative client for OpenAI's Administration API
 * (organization users and invites), over libcurl and jansson.  One client
 * per thread; the rate limiter is shared by every client of the process
 * (its rate is the api_rate of the client created last), and so is the
 * pause a 429 imposes (see openai_pause_left_ms).
 * The client never retries: it classifies, and the worker decides. */
#ifndef OR_OPENAI_H
#define OR_OPENAI_H

#include <stddef.h>
#include "config.h"

#define OPENAI_MAX_BODY (4u * 1024 * 1024)
#define OPENAI_MAX_PAGES 10000  /* has_more forever is a protocol error past this */

enum openai_status {
	OPENAI_OK = 0,
	OPENAI_NOT_FOUND,    /* 404 */
	OPENAI_RATE_LIMITED, /* 429; retry_after set when the server said */
	OPENAI_AUTH,         /* 401/403 */
	OPENAI_PERMANENT,    /* other 4xx, or an argument refused before sending */
	OPENAI_TRANSIENT,    /* 5xx, timeout, connection failure */
	OPENAI_PROTOCOL      /* malformed JSON, wrong types, oversized body */
};

struct openai_result {
	enum openai_status status;
	long http_status;     /* 0 when no answer */
	long retry_after;     /* seconds from now, -1 when not given */
	char message[512];    /* API error message or curl error; never the key */
};

struct openai_user {
	char *id;
	char *email;  /* may be NULL */
	char *role;   /* may be NULL */
	char *name;   /* may be NULL */
};

struct openai_invite {
	char *id;
	char *email;
	char *role;
	char *status; /* pending, accepted, expired */
};

struct openai_client;

/* curl_global_init once per process (idempotent, thread-safe via pthread_once). */
int openai_global_init(void);

/* key is copied into wiped memory.  NULL on error (err says why, e.g. http://
 * to a non-loopback host). */
struct openai_client *openai_client_new(const struct config *cfg, const char *key,
                                        char *err, size_t errlen);
void openai_client_free(struct openai_client *c);

/* Each returns res->status (OPENAI_OK == 0 on success). */
int openai_get_user(struct openai_client *c, const char *user_id,
                    struct openai_user *out, struct openai_result *res);
/* *already_gone = 1 when the answer was 404 (status is then OPENAI_OK). */
int openai_delete_user(struct openai_client *c, const char *user_id,
                       int *already_gone, struct openai_result *res);
/* All users whose email equals ADDR case-insensitively (0, 1 or more). */
int openai_find_users_by_email(struct openai_client *c, const char *email,
                               struct openai_user **out, size_t *n,
                               struct openai_result *res);
/* Every user, all pages; cb returning non-zero stops (status stays OK). */
typedef int (*openai_user_cb)(const struct openai_user *u, void *arg);
int openai_list_users(struct openai_client *c, openai_user_cb cb, void *arg,
                      struct openai_result *res);
typedef int (*openai_invite_cb)(const struct openai_invite *inv, void *arg);
int openai_list_invites(struct openai_client *c, openai_invite_cb cb, void *arg,
                        struct openai_result *res);
/* Deletes only pending invites: for another status, OPENAI_PERMANENT without a
 * request.  404 (the invite is gone already) gives OPENAI_NOT_FOUND. */
int openai_delete_invite(struct openai_client *c, const struct openai_invite *inv,
                         struct openai_result *res);

void openai_user_clear(struct openai_user *u);
void openai_users_free(struct openai_user *v, size_t n);
void openai_invite_clear(struct openai_invite *inv);
const char *openai_status_name(enum openai_status s);

/* After a 429, no request of the process is sent before its Retry-After has
 * passed (1 s when the server gave none or an unreadable one).  A request
 * waits out up to 5 s of that pause; when more is left it is not sent and
 * returns OPENAI_RATE_LIMITED, http_status 0, retry_after = seconds left.
 * The request that got the 429 returns OPENAI_RATE_LIMITED as before.
 * openai_pause_left_ms: what is left of the pause (0: none).
 * openai_pause_reset: ends it (for tests). */
long openai_pause_left_ms(void);
void openai_pause_reset(void);

/* Parsers, exposed for tests and fuzzing.  They never crash on any input. */
int openai_parse_user(const char *body, size_t len, struct openai_user *out,
                      struct openai_result *res);
/* A list page: users appended to (*v, *n) (realloc'd), *has_more, *last_id (owned). */
int openai_parse_user_page(const char *body, size_t len, struct openai_user **v,
                           size_t *n, int *has_more, char **last_id,
                           struct openai_result *res);
int openai_parse_invite_page(const char *body, size_t len, struct openai_invite **v,
                             size_t *n, int *has_more, char **last_id,
                             struct openai_result *res);
int openai_parse_deleted(const char *body, size_t len, const char *object,
                         struct openai_result *res);
/* Retry-After: delta seconds or HTTP-date; -1 when unparseable. */
long openai_parse_retry_after(const char *value, long now);

/* Checks, exposed for tests.  OPENAI_OK, or OPENAI_PERMANENT with a message
 * when ID is empty, longer than 256 bytes, or holds '/', '?', '#', '%', '\\',
 * white space or control characters. */
int openai_id_check(const char *id, struct openai_result *res);
/* 0, or -1 with err set: api_url must be https://, or http:// to loopback. */
int openai_check_api_url(const char *url, char *err, size_t errlen);
/* api_url + path [+ "/" + escaped id] [+ "?" name=escaped value & ...];
 * params is name, value, ..., NULL (names are used as given).  Caller frees. */
char *openai_url_new(const char *api_url, const char *path, const char *id,
                     const char *const *params);

#endif
