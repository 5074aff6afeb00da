/* fuzz_openai: libFuzzer target for the API client's answer parsers, the
 * Retry-After parser and the ID / api_url checks: any bytes must give a
 * classified result, never a crash, leak, hang or a broken invariant.
 * FUZZ-SOURCES: module/openai.c module/config.c module/log.c
 * FUZZ-LIBS: -lcurl -ljansson -lldap -llber
 */
#include "openai.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_result(const struct openai_result *res, int rc)
{
	const char *p;

	if (rc != (int)res->status)
		__builtin_trap();
	if (rc != OPENAI_OK && rc != OPENAI_PROTOCOL)
		__builtin_trap(); /* a parser only ever says ok or protocol */
	if (rc == OPENAI_PROTOCOL && res->message[0] == '\0')
		__builtin_trap();
	for (p = res->message; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			__builtin_trap(); /* messages go to syslog */
}

static void check_id(const char *id)
{
	struct openai_result r;

	if (!id || openai_id_check(id, &r) != OPENAI_OK)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct openai_result res;
	struct openai_user u, *users = NULL;
	struct openai_invite *invs = NULL;
	size_t n = 0, i;
	int more = 0, rc;
	char *last = NULL, *s, *url, err[256];

	memset(&res, 0, sizeof(res));
	rc = openai_parse_user(body, size, &u, &res);
	check_result(&res, rc);
	if (rc == OPENAI_OK)
		check_id(u.id);
	else if (u.id || u.email || u.role || u.name)
		__builtin_trap();
	openai_user_clear(&u);

	rc = openai_parse_user_page(body, size, &users, &n, &more, &last, &res);
	check_result(&res, rc);
	if (rc == OPENAI_OK) {
		if (more)
			check_id(last);
		for (i = 0; i < n; i++)
			check_id(users[i].id);
	} else if (n || users || last) {
		__builtin_trap();
	}
	openai_users_free(users, n);
	free(last);
	last = NULL;

	n = 0;
	more = 0;
	rc = openai_parse_invite_page(body, size, &invs, &n, &more, &last, &res);
	check_result(&res, rc);
	for (i = 0; i < n; i++) {
		check_id(invs[i].id);
		if (!invs[i].email || !invs[i].status)
			__builtin_trap();
		openai_invite_clear(&invs[i]);
	}
	free(invs);
	free(last);

	rc = openai_parse_deleted(body, size, "organization.user.deleted", &res);
	check_result(&res, rc);

	/* The string checks want a C string: cut at the first NUL. */
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	{
		long ra = openai_parse_retry_after(s, 1700000000L);
		if (ra < -1 || ra > 86400)
			__builtin_trap();
	}
	if (openai_id_check(s, &res) == OPENAI_OK) {
		url = openai_url_new("https://api.example.com/v1", "/organization/users", s, NULL);
		/* an accepted ID stays one path segment */
		if (!url || strchr(url + strlen("https://api.example.com/v1/organization/users/"), '/'))
			__builtin_trap();
		free(url);
	}
	{
		const char *params[] = { "emails%5B%5D", s, "after", s, NULL };
		url = openai_url_new("https://api.example.com/v1", "/organization/users", NULL, params);
		if (!url || strchr(url, '#') || strchr(url, ' ') ||
		    strchr(strchr(url, '?') + 1, '?'))
			__builtin_trap();
		free(url);
	}
	err[0] = '\0';
	if (openai_check_api_url(s, err, sizeof(err)) != 0 && err[0] == '\0')
		__builtin_trap();
	free(s);
	return 0;
}
