/* rules: the pure decisions of DESIGN.md section 5 (which modified attribute
 * can disable an account, is a DN inside a subtree, is a ppolicy lock the
 * administrative one), plus the DN normalisation the map file shares. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ldap.h>

#include "rules.h"

int rules_attr_is_trigger(const struct config *cfg, const char *attr)
{
	size_t n;
	char *const *p;

	if (!cfg || !attr || !cfg->disabled_attrs)
		return 0;
	/* "pwdAccountLockedTime;x-foo" names the same attribute */
	n = strcspn(attr, ";");
	while (n > 0 && attr[n - 1] == ' ')
		n--;
	if (n == 0)
		return 0;
	for (p = cfg->disabled_attrs; *p; p++)
		if (strlen(*p) == n && strncasecmp(*p, attr, n) == 0)
			return 1;
	return 0;
}

int rules_is_admin_lock(const char *value)
{
	/* ppolicy's "locked until an administrator unlocks" sentinel; any
	 * other time is a lockout that expires by itself */
	return value && (strcmp(value, "000001010000Z") == 0 ||
	                 strcmp(value, "000001010000z") == 0);
}

/* A growing string; its size is bounded by the DN being normalised. */
struct nbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void nb_putc(struct nbuf *b, char c)
{
	if (b->oom)
		return;
	if (b->len + 2 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	b->p[b->len++] = c;
	b->p[b->len] = '\0';
}

static void nb_hex(struct nbuf *b, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	nb_putc(b, hex[c >> 4]);
	nb_putc(b, hex[c & 15]);
}

/* One attribute value as compared by caseIgnoreMatch, roughly: ASCII case
 * folded, leading and trailing spaces dropped, inner runs of spaces made
 * one.  Characters that are special in a DN are escaped so the result
 * splits unambiguously on ',' and '+'. */
static void nb_value(struct nbuf *b, const LDAPAVA *ava)
{
	const unsigned char *v = (const unsigned char *)ava->la_value.bv_val;
	size_t n = ava->la_value.bv_len, i, start = 0;
	int space = 0;

	if (ava->la_flags & LDAP_AVA_BINARY) {
		nb_putc(b, '#');
		for (i = 0; i < n; i++)
			nb_hex(b, v[i]);
		return;
	}
	while (start < n && isspace(v[start]))
		start++;
	while (n > start && isspace(v[n - 1]))
		n--;
	for (i = start; i < n; i++) {
		unsigned char c = v[i];
		if (c == ' ' || c == '\t') {
			space = 1;
			continue;
		}
		if (space) {
			nb_putc(b, ' ');
			space = 0;
		}
		if (c < 0x20 || c == 0x7f || strchr(",+\"\\<>;=#", c)) {
			nb_putc(b, '\\');
			nb_hex(b, c);
		} else {
			nb_putc(b, (char)tolower(c));
		}
	}
}

static int ava_cmp(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	return strcmp(x, y);
}

/* One RDN: its AVAs normalised and sorted, so "cn=a+sn=b" equals "sn=b+cn=a". */
static int nb_rdn(struct nbuf *out, LDAPRDN rdn)
{
	size_t n = 0, i;
	char **parts = NULL;
	int rc = -1;

	while (rdn[n])
		n++;
	parts = calloc(n ? n : 1, sizeof(*parts));
	if (!parts)
		return -1;
	for (i = 0; i < n; i++) {
		struct nbuf b = { 0 };
		size_t k;
		for (k = 0; k < rdn[i]->la_attr.bv_len; k++)
			nb_putc(&b, (char)tolower((unsigned char)rdn[i]->la_attr.bv_val[k]));
		nb_putc(&b, '=');
		nb_value(&b, rdn[i]);
		if (b.oom) {
			free(b.p);
			goto out;
		}
		parts[i] = b.p;
	}
	qsort(parts, n, sizeof(*parts), ava_cmp);
	for (i = 0; i < n; i++) {
		const char *s;
		if (i)
			nb_putc(out, '+');
		for (s = parts[i]; *s; s++)
			nb_putc(out, *s);
	}
	rc = out->oom ? -1 : 0;
out:
	for (i = 0; i < n; i++)
		free(parts[i]);
	free(parts);
	return rc;
}

char *rules_dn_normalize(const char *dn)
{
	LDAPDN parsed = NULL;
	struct nbuf b = { 0 };
	size_t i;

	if (!dn)
		return NULL;
	/* RFC 4514 first; then libldap's lenient form, which also takes the
	 * LDAPv2 spellings (';' between RDNs, quoted values) people still write */
	if (ldap_str2dn(dn, &parsed, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS &&
	    ldap_str2dn(dn, &parsed, LDAP_DN_FORMAT_LDAP) != LDAP_SUCCESS)
		return NULL;
	nb_putc(&b, '\0');  /* "" is the root DN */
	b.len = 0;
	for (i = 0; parsed && parsed[i]; i++) {
		if (i)
			nb_putc(&b, ',');
		if (nb_rdn(&b, parsed[i]) != 0) {
			b.oom = 1;
			break;
		}
	}
	ldap_dnfree(parsed);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

int rules_dn_is_below(const char *dn, const char *base)
{
	char *nd = NULL, *nbase = NULL;
	size_t ld, lb;
	int below = 0;

	if (!dn || !base)
		return 0;
	nd = rules_dn_normalize(dn);
	nbase = rules_dn_normalize(base);
	if (!nd || !nbase)
		goto out;
	ld = strlen(nd);
	lb = strlen(nbase);
	if (lb == 0) {
		below = 1;  /* the root holds everything */
		goto out;
	}
	/* escaping in normalised form leaves ',' only between RDNs */
	if (ld == lb)
		below = strcmp(nd, nbase) == 0;
	else if (ld > lb)
		below = nd[ld - lb - 1] == ',' && strcmp(nd + ld - lb, nbase) == 0;
out:
	free(nd);
	free(nbase);
	return below;
}
