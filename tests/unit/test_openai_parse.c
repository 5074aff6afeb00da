/* test_openai_parse: the pure parts of the API client — answer parsers,
 * Retry-After, ID checks, URL building and the api_url policy — on good,
 * bad, wrongly typed, truncated and huge inputs.  No network. */
#include <stdlib.h>
#include <string.h>

#include "openai.h"
#include "tap.h"

static struct openai_result res;

static void reset(void)
{
	memset(&res, 0, sizeof(res));
	res.retry_after = -1;
}

static int pu(const char *s, struct openai_user *u)
{
	reset();
	return openai_parse_user(s, s ? strlen(s) : 0, u, &res);
}

static void test_user(void)
{
	struct openai_user u;

	is_int(pu("{\"object\":\"organization.user\",\"id\":\"user-abc\",\"name\":\"First Last\","
	          "\"email\":\"a@example.com\",\"role\":\"owner\",\"added_at\":1711471533}", &u),
	       OPENAI_OK, "user: good object");
	is_str(u.id, "user-abc", "user: id");
	is_str(u.email, "a@example.com", "user: email");
	is_str(u.role, "owner", "user: role");
	is_str(u.name, "First Last", "user: name");
	openai_user_clear(&u);
	ok(u.id == NULL && u.email == NULL, "user: clear resets");

	is_int(pu("{\"id\":\"u1\",\"email\":null,\"role\":null,\"name\":null,\"future\":{\"x\":[1,2]}}", &u),
	       OPENAI_OK, "user: nulls and unknown fields accepted");
	ok(u.email == NULL && u.role == NULL && u.name == NULL, "user: nulls become NULL");
	openai_user_clear(&u);

	is_int(pu("{\"id\":\"u1\"}", &u), OPENAI_OK, "user: only id");
	openai_user_clear(&u);

	is_int(pu("{\"id\":\"u1\",\"email\":null,\"user\":{\"object\":\"user\",\"id\":\"x\",\"email\":\"n@example.com\"}}", &u),
	       OPENAI_OK, "user: nested address");
	is_str(u.email, "n@example.com", "user: nested address used when the top one is null");
	openai_user_clear(&u);
	is_int(pu("{\"id\":\"u1\",\"user\":{\"email\":5}}", &u), OPENAI_PROTOCOL,
	       "user: nested address of the wrong type refused");
	is_int(pu("{\"id\":\"u1\",\"email\":\"top@example.com\",\"user\":{\"email\":\"n@example.com\"}}", &u),
	       OPENAI_OK, "user: top and nested");
	is_str(u.email, "top@example.com", "user: top-level address wins");
	openai_user_clear(&u);

	is_int(pu("{\"email\":\"a@example.com\"}", &u), OPENAI_PROTOCOL, "user: id missing");
	contains(res.message, "id missing", "user: message says id missing");
	ok(u.id == NULL && u.email == NULL, "user: nothing left on failure");
	is_int(pu("{\"id\":42}", &u), OPENAI_PROTOCOL, "user: numeric id");
	contains(res.message, "not a string", "user: message says not a string");
	is_int(pu("{\"id\":\"\"}", &u), OPENAI_PROTOCOL, "user: empty id");
	is_int(pu("{\"id\":null}", &u), OPENAI_PROTOCOL, "user: null id");
	is_int(pu("{\"id\":\"../../organization\"}", &u), OPENAI_PROTOCOL, "user: id with a slash");
	is_int(pu("{\"id\":\"u1\",\"email\":[\"a\"]}", &u), OPENAI_PROTOCOL, "user: email an array");
	is_int(pu("{\"id\":\"u1\",\"role\":1}", &u), OPENAI_PROTOCOL, "user: role a number");
	contains(res.message, "role", "user: message names role");
	is_int(pu("{\"id\":\"u1\",\"name\":true}", &u), OPENAI_PROTOCOL, "user: name a boolean");
	is_int(pu("[{\"id\":\"u1\"}]", &u), OPENAI_PROTOCOL, "user: array instead of object");
	is_int(pu("\"u1\"", &u), OPENAI_PROTOCOL, "user: string instead of object");
	is_int(pu("{\"id\":\"u1\"", &u), OPENAI_PROTOCOL, "user: truncated JSON");
	contains(res.message, "malformed JSON", "user: message says malformed");
	is_int(pu("{\"id\":\"u1\"} trailing", &u), OPENAI_PROTOCOL, "user: trailing garbage");
	is_int(pu("<html>502 Bad Gateway</html>", &u), OPENAI_PROTOCOL, "user: HTML");
	is_int(pu("", &u), OPENAI_PROTOCOL, "user: empty body");
	is_int(pu(NULL, &u), OPENAI_PROTOCOL, "user: NULL body");
	is_int(pu("{\"id\":\"u\\u0000x\"}", &u), OPENAI_PROTOCOL, "user: NUL inside a string refused");
	reset();
	is_int(openai_parse_user("{\"id\":\"u1\"}garbage", 11, &u, &res), OPENAI_OK,
	       "user: length respected (no NUL terminator needed)");
	openai_user_clear(&u);
	is_int(openai_parse_user("{\"id\":\"u1\"}", 11, &u, NULL), OPENAI_OK, "user: NULL result allowed");
	openai_user_clear(&u);

	{
		/* Control characters in the parser's message would forge log lines. */
		is_int(pu("{\"id\":\"u1\",\n\n\t\x01 }", &u), OPENAI_PROTOCOL, "user: control bytes");
		ok(strpbrk(res.message, "\n\r\t\x01") == NULL, "user: message free of control characters");
	}
}

static void test_huge(void)
{
	struct openai_user u, *v = NULL;
	size_t n = 0, i, big = 3u * 1024 * 1024;
	char *s = malloc(big + 64), *last = NULL;
	int more = 0;

	/* Deep nesting: jansson's depth limit, not the stack, ends it. */
	for (i = 0; i < big; i++)
		s[i] = '[';
	s[big] = '\0';
	is_int(pu(s, &u), OPENAI_PROTOCOL, "huge: 3 MiB of '[' refused");

	/* A long string is fine for an unused field... */
	strcpy(s, "{\"id\":\"u1\",\"bio\":\"");
	i = strlen(s);
	memset(s + i, 'x', big);
	strcpy(s + i + big, "\"}");
	is_int(pu(s, &u), OPENAI_OK, "huge: 3 MiB unknown string ignored");
	openai_user_clear(&u);
	/* ...but an ID that long is not usable in a path. */
	strcpy(s, "{\"id\":\"");
	i = strlen(s);
	memset(s + i, 'x', 4000);
	strcpy(s + i + 4000, "\"}");
	is_int(pu(s, &u), OPENAI_PROTOCOL, "huge: 4000-byte id refused");

	/* Many users in one page. */
	strcpy(s, "{\"object\":\"list\",\"has_more\":false,\"data\":[");
	for (i = 0; i < 20000; i++)
		sprintf(s + strlen(s), "%s{\"id\":\"user-%zu\",\"email\":\"u%zu@example.com\"}",
		        i ? "," : "", i, i);
	strcat(s, "]}");
	reset();
	is_int(openai_parse_user_page(s, strlen(s), &v, &n, &more, &last, &res), OPENAI_OK,
	       "huge: 20000 users in one page");
	is_int(n, 20000, "huge: all 20000 parsed");
	is_str(v[19999].id, "user-19999", "huge: last one right");
	openai_users_free(v, n);
	free(last);
	free(s);
}

static int pp(const char *s, struct openai_user **v, size_t *n, int *more, char **last)
{
	reset();
	*last = NULL;
	return openai_parse_user_page(s, strlen(s), v, n, more, last, &res);
}

static void test_user_page(void)
{
	struct openai_user *v = NULL;
	size_t n = 0;
	int more = -1;
	char *last = NULL;

	is_int(pp("{\"object\":\"list\",\"data\":[{\"id\":\"u1\",\"email\":\"a@x\"},{\"id\":\"u2\",\"role\":\"reader\"}],"
	          "\"first_id\":\"u1\",\"last_id\":\"u2\",\"has_more\":true}", &v, &n, &more, &last),
	       OPENAI_OK, "page: good");
	is_int(n, 2, "page: two users");
	is_int(more, 1, "page: has_more");
	is_str(last, "u2", "page: last_id");
	is_str(v[1].role, "reader", "page: role");
	free(last);

	is_int(pp("{\"data\":[{\"id\":\"u3\"}],\"has_more\":false,\"last_id\":null}", &v, &n, &more, &last),
	       OPENAI_OK, "page: appended");
	is_int(n, 3, "page: appended to the vector");
	is_str(v[2].id, "u3", "page: appended in order");
	is_int(more, 0, "page: no more");
	ok(last == NULL, "page: null last_id");

	is_int(pp("{\"data\":[{\"id\":\"u4\"},{\"id\":\"u5\"}],\"has_more\":true}", &v, &n, &more, &last),
	       OPENAI_OK, "page: has_more without last_id");
	is_str(last, "u5", "page: cursor from the last item");
	free(last);
	is_int(pp("{\"data\":[{\"id\":\"u6\"}],\"has_more\":true,\"last_id\":\"\"}", &v, &n, &more, &last),
	       OPENAI_OK, "page: empty last_id");
	is_str(last, "u6", "page: empty last_id falls back to the last item");
	free(last);
	is_int(n, 6, "page: six users so far");

	is_int(pp("{\"data\":[],\"has_more\":true}", &v, &n, &more, &last), OPENAI_PROTOCOL,
	       "page: has_more with no cursor at all");
	contains(res.message, "has_more", "page: message says why");
	is_int(pp("{\"data\":[],\"has_more\":true,\"last_id\":\"a/b\"}", &v, &n, &more, &last),
	       OPENAI_PROTOCOL, "page: unusable cursor");
	is_int(pp("{\"data\":[],\"has_more\":false}", &v, &n, &more, &last), OPENAI_OK, "page: empty page");
	is_int(pp("{\"data\":{\"id\":\"u1\"},\"has_more\":false}", &v, &n, &more, &last), OPENAI_PROTOCOL,
	       "page: data an object");
	contains(res.message, "not an array", "page: message says not an array");
	is_int(pp("{\"data\":null,\"has_more\":false}", &v, &n, &more, &last), OPENAI_PROTOCOL, "page: data null");
	is_int(pp("{\"has_more\":false}", &v, &n, &more, &last), OPENAI_PROTOCOL, "page: data missing");
	is_int(pp("{\"data\":[]}", &v, &n, &more, &last), OPENAI_PROTOCOL, "page: has_more missing");
	is_int(pp("{\"data\":[],\"has_more\":\"false\"}", &v, &n, &more, &last), OPENAI_PROTOCOL,
	       "page: has_more a string");
	is_int(pp("{\"data\":[],\"has_more\":0}", &v, &n, &more, &last), OPENAI_PROTOCOL, "page: has_more a number");
	is_int(pp("{\"data\":[],\"has_more\":false,\"last_id\":7}", &v, &n, &more, &last), OPENAI_PROTOCOL,
	       "page: last_id a number");
	is_int(pp("{\"data\":[{\"id\":\"u7\"},{\"id\":8}],\"has_more\":false}", &v, &n, &more, &last),
	       OPENAI_PROTOCOL, "page: one bad item spoils the page");
	is_int(pp("{\"data\":[{\"id\":\"u7\"},\"u8\"],\"has_more\":false}", &v, &n, &more, &last),
	       OPENAI_PROTOCOL, "page: an item that is not an object");
	is_int(pp("{\"data\":[{\"id\":\"u7\"}],\"has_more\":fal", &v, &n, &more, &last), OPENAI_PROTOCOL,
	       "page: truncated");
	is_int(pp("[]", &v, &n, &more, &last), OPENAI_PROTOCOL, "page: bare array");
	is_int(n, 6, "page: failures left the vector alone");
	openai_users_free(v, n);
}

static void test_invite_page(void)
{
	struct openai_invite *v = NULL;
	size_t n = 0, i;
	int more = 0;
	char *last = NULL;
	const char *good =
		"{\"object\":\"list\",\"data\":[{\"object\":\"organization.invite\",\"id\":\"invite-1\","
		"\"email\":\"a@x\",\"role\":\"reader\",\"status\":\"pending\",\"created_at\":1,"
		"\"projects\":[]},{\"id\":\"invite-2\",\"email\":\"b@x\",\"status\":\"accepted\"}],"
		"\"has_more\":true,\"last_id\":\"invite-2\"}";

	reset();
	is_int(openai_parse_invite_page(good, strlen(good), &v, &n, &more, &last, &res), OPENAI_OK,
	       "invites: good page");
	is_int(n, 2, "invites: two");
	is_str(v[0].status, "pending", "invites: status");
	is_str(v[0].role, "reader", "invites: role");
	ok(v[1].role == NULL, "invites: missing role is NULL");
	is_str(last, "invite-2", "invites: cursor");
	free(last);
	last = NULL;

#define BAD_INVITE(body, what) do { \
	reset(); \
	is_int(openai_parse_invite_page(body, strlen(body), &v, &n, &more, &last, &res), \
	       OPENAI_PROTOCOL, "invites: " what); } while (0)
	BAD_INVITE("{\"data\":[{\"id\":\"i\",\"status\":\"pending\"}],\"has_more\":false}", "email missing");
	BAD_INVITE("{\"data\":[{\"id\":\"i\",\"email\":\"a@x\"}],\"has_more\":false}", "status missing");
	BAD_INVITE("{\"data\":[{\"id\":\"i\",\"email\":\"a@x\",\"status\":1}],\"has_more\":false}", "status a number");
	BAD_INVITE("{\"data\":[{\"id\":\"i\",\"email\":null,\"status\":\"pending\"}],\"has_more\":false}", "email null");
	BAD_INVITE("{\"data\":[{\"email\":\"a@x\",\"status\":\"pending\"}],\"has_more\":false}", "id missing");
	BAD_INVITE("{\"data\":\"nope\",\"has_more\":false}", "data a string");
	BAD_INVITE("{\"data\":[],\"has_more\":null}", "has_more null");
	BAD_INVITE("not json", "not JSON");
	is_int(n, 2, "invites: failures left the vector alone");
	for (i = 0; i < n; i++)
		openai_invite_clear(&v[i]);
	free(v);
}

static int pd(const char *s, const char *object)
{
	reset();
	return openai_parse_deleted(s, strlen(s), object, &res);
}

static void test_deleted(void)
{
	is_int(pd("{\"object\":\"organization.user.deleted\",\"id\":\"u1\",\"deleted\":true}",
	          "organization.user.deleted"), OPENAI_OK, "deleted: good");
	is_int(pd("{\"id\":\"u1\",\"deleted\":true}", "organization.user.deleted"), OPENAI_OK,
	       "deleted: object absent is fine");
	is_int(pd("{\"object\":\"organization.invite.deleted\",\"deleted\":true}", "organization.user.deleted"),
	       OPENAI_PROTOCOL, "deleted: another object refused");
	is_int(pd("{\"object\":5,\"deleted\":true}", "organization.user.deleted"), OPENAI_PROTOCOL,
	       "deleted: object a number");
	is_int(pd("{\"object\":\"organization.user.deleted\",\"deleted\":false}", "organization.user.deleted"),
	       OPENAI_PROTOCOL, "deleted: deleted=false is not success");
	contains(res.message, "deleted=false", "deleted: message says so");
	is_int(pd("{\"deleted\":\"true\"}", NULL), OPENAI_PROTOCOL, "deleted: a string");
	is_int(pd("{\"deleted\":1}", NULL), OPENAI_PROTOCOL, "deleted: a number");
	is_int(pd("{\"id\":\"u1\"}", NULL), OPENAI_PROTOCOL, "deleted: missing");
	is_int(pd("{\"deleted\":tru", NULL), OPENAI_PROTOCOL, "deleted: truncated");
	is_int(pd("{}", NULL), OPENAI_PROTOCOL, "deleted: empty object");
}

static void test_retry_after(void)
{
	const long now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */

	is_int(openai_parse_retry_after("120", now), 120, "retry-after: seconds");
	is_int(openai_parse_retry_after(" 5 \r\n", now), 5, "retry-after: white space around");
	is_int(openai_parse_retry_after("0", now), 0, "retry-after: zero");
	is_int(openai_parse_retry_after("99999999999999999999999", now), 86400,
	       "retry-after: huge clamped to a day");
	is_int(openai_parse_retry_after("-5", now), -1, "retry-after: negative refused");
	is_int(openai_parse_retry_after("+5", now), -1, "retry-after: sign refused");
	is_int(openai_parse_retry_after("1.5", now), -1, "retry-after: fraction refused");
	is_int(openai_parse_retry_after("5s", now), -1, "retry-after: unit refused");
	is_int(openai_parse_retry_after("", now), -1, "retry-after: empty");
	is_int(openai_parse_retry_after("   ", now), -1, "retry-after: blank");
	is_int(openai_parse_retry_after(NULL, now), -1, "retry-after: NULL");
	is_int(openai_parse_retry_after("soon", now), -1, "retry-after: word");
	is_int(openai_parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now), 120,
	       "retry-after: IMF-fixdate");
	is_int(openai_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), 0,
	       "retry-after: date now");
	is_int(openai_parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now), 0,
	       "retry-after: date in the past is 0");
	is_int(openai_parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", now), 86400,
	       "retry-after: across a day");
	is_int(openai_parse_retry_after("Thu, 01 Jan 2099 00:00:00 GMT", now), 86400,
	       "retry-after: far future clamped");
	is_int(openai_parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now), 60,
	       "retry-after: RFC 850 date");
	is_int(openai_parse_retry_after("Sun Nov  6 08:49:47 1994", now), 10,
	       "retry-after: asctime date");
	is_int(openai_parse_retry_after("Thu, 29 Feb 1996 00:00:00 GMT", 825552000 - 30), 30,
	       "retry-after: leap day");
	is_int(openai_parse_retry_after("Thu, 30 Feb 1996 00:00:00 GMT", now), -1,
	       "retry-after: 30 February refused");
	is_int(openai_parse_retry_after("Sun, 06 Nov 1994 24:00:00 GMT", now), -1,
	       "retry-after: hour 24 refused");
	is_int(openai_parse_retry_after("Sun, 06 Nov 1994 08:49:37 UTC", now), -1,
	       "retry-after: UTC instead of GMT refused");
	is_int(openai_parse_retry_after("Sun, 6 Nov 1994 08:49:37 GMT", now), -1,
	       "retry-after: one-digit day refused in IMF-fixdate");
	is_int(openai_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT x", now), -1,
	       "retry-after: trailing text refused");
	is_int(openai_parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", now), -1,
	       "retry-after: unknown month refused");
	is_int(openai_parse_retry_after("Sun, 06 Nov 1994 08:49", now), -1,
	       "retry-after: truncated date refused");
}

static void test_ids(void)
{
	char id[300];
	static const char *const bad[] = {
		"a/b", "a?b", "a#b", "a%2Fb", "a b", "a\tb", "a\nb", "a\rb", "\x01", "a\x7f", "a\\b", "..%2f",
		NULL
	};
	int i;

	reset();
	is_int(openai_id_check("user-abc_DEF.123", &res), OPENAI_OK, "id: ordinary");
	is_int(openai_id_check("invite-\xc3\xa9", &res), OPENAI_OK, "id: UTF-8 is allowed (escaped on the wire)");
	is_int(openai_id_check("", &res), OPENAI_PERMANENT, "id: empty refused");
	is_int(openai_id_check(NULL, &res), OPENAI_PERMANENT, "id: NULL refused");
	memset(id, 'a', 256);
	id[256] = '\0';
	is_int(openai_id_check(id, &res), OPENAI_OK, "id: 256 bytes");
	id[256] = 'a';
	id[257] = '\0';
	is_int(openai_id_check(id, &res), OPENAI_PERMANENT, "id: 257 bytes refused");
	for (i = 0; bad[i]; i++) {
		reset();
		is_int(openai_id_check(bad[i], &res), OPENAI_PERMANENT, "id: refused (case %d)", i);
		ok(res.message[0] != '\0', "id: with a message (case %d)", i);
	}
}

static void test_urls(void)
{
	char *u;
	const char *p1[] = { "limit", "100", NULL };
	const char *p2[] = { "emails%5B%5D", "Jo.Doe+tag@Example.com", "limit", "100", "after", "user-1&x=y", NULL };
	const char *p3[] = { "limit", NULL };

	u = openai_url_new("https://api.openai.com/v1", "/organization/users", "user-abc", NULL);
	is_str(u, "https://api.openai.com/v1/organization/users/user-abc", "url: id");
	free(u);
	u = openai_url_new("https://api.openai.com/v1//", "/organization/users", NULL, p1);
	is_str(u, "https://api.openai.com/v1/organization/users?limit=100", "url: trailing slashes dropped");
	free(u);
	u = openai_url_new("http://127.0.0.1:8080/v1", "/organization/users", NULL, p2);
	is_str(u, "http://127.0.0.1:8080/v1/organization/users?emails%5B%5D=Jo.Doe%2Btag%40Example.com"
	          "&limit=100&after=user-1%26x%3Dy", "url: query values escaped");
	free(u);
	u = openai_url_new("https://h/v1", "/organization/invites", "inv \xc3\xa9/..", NULL);
	is_str(u, "https://h/v1/organization/invites/inv%20%C3%A9%2F..", "url: path segment escaped");
	free(u);
	ok(openai_url_new("https://h/v1", "/x", NULL, p3) == NULL, "url: odd parameter list refused");
	ok(openai_url_new(NULL, "/x", NULL, NULL) == NULL, "url: NULL base refused");
}

static void test_api_url(void)
{
	char err[256];
	static const char *const good[] = {
		"https://api.openai.com/v1", "HTTPS://api.openai.com/v1", "https://10.0.0.1:8443/v1",
		"http://127.0.0.1:8080/v1", "http://127.3.2.1/v1", "http://localhost:1234/v1",
		"http://LOCALHOST/v1", "http://[::1]:8080/v1", "http://[::ffff:127.0.0.1]/v1",
		"http://127.0.0.1", NULL
	};
	static const char *const bad[] = {
		"http://api.openai.com/v1", "http://10.0.0.1/v1", "http://[::2]/v1", "http://128.0.0.1/v1",
		"http://localhost.example.com/v1", "http://127.0.0.1.example.com/v1",
		"http://127.0.0.1@evil.example.com/v1", "https://user:pw@api.openai.com/v1",
		"ftp://127.0.0.1/v1", "file:///etc/passwd", "api.openai.com/v1", "", "http://", "https:///v1",
		"http://[::1/v1", "http://2130706433/v1", "http://127.1/v1", "http://[]/v1", NULL
	};
	int i;

	for (i = 0; good[i]; i++)
		is_int(openai_check_api_url(good[i], err, sizeof(err)), 0, "api_url accepted: %s", good[i]);
	for (i = 0; bad[i]; i++) {
		err[0] = '\0';
		is_int(openai_check_api_url(bad[i], err, sizeof(err)), -1, "api_url refused: %s", bad[i]);
		contains(err, "api_url", "api_url: message names the keyword (%s)", bad[i]);
	}
	openai_check_api_url("http://api.example.com/v1", err, sizeof(err));
	contains(err, "loopback", "api_url: message explains the loopback rule");
	contains(err, "api.example.com", "api_url: message names the host");
}

static void test_names(void)
{
	is_str(openai_status_name(OPENAI_OK), "ok", "name: ok");
	is_str(openai_status_name(OPENAI_NOT_FOUND), "not_found", "name: not_found");
	is_str(openai_status_name(OPENAI_RATE_LIMITED), "rate_limited", "name: rate_limited");
	is_str(openai_status_name(OPENAI_AUTH), "auth", "name: auth");
	is_str(openai_status_name(OPENAI_PERMANENT), "permanent", "name: permanent");
	is_str(openai_status_name(OPENAI_TRANSIENT), "transient", "name: transient");
	is_str(openai_status_name(OPENAI_PROTOCOL), "protocol", "name: protocol");
	is_str(openai_status_name((enum openai_status)99), "unknown", "name: out of range");
}

int main(void)
{
	test_user();
	test_huge();
	test_user_page();
	test_invite_page();
	test_deleted();
	test_retry_after();
	test_ids();
	test_urls();
	test_api_url();
	test_names();
	return tap_done();
}
