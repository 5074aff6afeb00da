/* ldapload: the benchmarks' load generator.  Several connections, one thread
 * each, several modify operations in flight per connection through
 * libldap's asynchronous API; prints throughput and latency percentiles, and
 * optionally the completion time of every operation (for the
 * disable-to-removal benchmark).  Not installed. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ldap.h>

struct opts {
	const char *uri, *binddn, *pw, *base, *attr, *value, *times_file;
	long ops, users, first;
	int conns, depth;
	double rate;      /* ops per second, 0: as fast as possible */
	int distinct;     /* each op on a different user (disables) */
};

struct slot {
	int msgid;
	long index;
	uint64_t start;
};

struct thr {
	pthread_t tid;
	const struct opts *o;
	uint64_t *lat;    /* ns, per completed op */
	long nlat, errors;
	FILE *times;
};

static atomic_long next_op;
static uint64_t t0;
static pthread_mutex_t times_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(int clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t when)
{
	struct timespec ts = { (time_t)(when / 1000000000u), (long)(when % 1000000000u) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static int issue(LDAP *ld, const struct opts *o, long i, int *msgid)
{
	char dn[512], val[64];
	char *vals[2] = { val, NULL };
	LDAPMod mod = { LDAP_MOD_REPLACE, (char *)o->attr, { .modv_strvals = vals } };
	LDAPMod *mods[2] = { &mod, NULL };
	long u = o->first + (o->distinct ? i : i % o->users);

	snprintf(dn, sizeof(dn), "uid=u%06ld,%s", u, o->base);
	if (o->value)
		snprintf(val, sizeof(val), "%s", o->value);
	else
		snprintf(val, sizeof(val), "load %ld", i);
	return ldap_modify_ext(ld, dn, mods, NULL, NULL, msgid);
}

static void *run(void *arg)
{
	struct thr *t = arg;
	const struct opts *o = t->o;
	struct slot *slots = calloc((size_t)o->depth, sizeof(*slots));
	LDAP *ld = NULL;
	int v3 = LDAP_VERSION3, inflight = 0;
	struct berval cred;

	if (!slots || ldap_initialize(&ld, o->uri) != LDAP_SUCCESS)
		goto fail;
	ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
	cred.bv_val = (char *)o->pw;
	cred.bv_len = strlen(o->pw);
	if (ldap_sasl_bind_s(ld, o->binddn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL) != LDAP_SUCCESS)
		goto fail;
	for (;;) {
		/* Fill the window. */
		while (inflight < o->depth) {
			long i = atomic_fetch_add(&next_op, 1);
			int k;

			if (i >= o->ops)
				break;
			if (o->rate > 0)
				sleep_until(t0 + (uint64_t)((double)i * 1e9 / o->rate));
			for (k = 0; k < o->depth && slots[k].msgid; k++)
				;
			slots[k].index = i;
			slots[k].start = now_ns(CLOCK_MONOTONIC);
			if (issue(ld, o, i, &slots[k].msgid) != LDAP_SUCCESS) {
				slots[k].msgid = 0;
				t->errors++;
				continue;
			}
			inflight++;
		}
		if (!inflight)
			break;
		{
			LDAPMessage *res = NULL;
			int rc = ldap_result(ld, LDAP_RES_ANY, LDAP_MSG_ALL, NULL, &res);
			int id, code = LDAP_OTHER, k;
			uint64_t end = now_ns(CLOCK_MONOTONIC);

			if (rc <= 0)
				goto fail;
			id = ldap_msgid(res);
			ldap_parse_result(ld, res, &code, NULL, NULL, NULL, NULL, 1);
			for (k = 0; k < o->depth && slots[k].msgid != id; k++)
				;
			if (k == o->depth)
				continue;
			if (code == LDAP_SUCCESS) {
				t->lat[t->nlat++] = end - slots[k].start;
				if (t->times) {
					pthread_mutex_lock(&times_lock);
					fprintf(t->times, "%ld %.6f\n", slots[k].index,
					        (double)now_ns(CLOCK_REALTIME) / 1e9);
					pthread_mutex_unlock(&times_lock);
				}
			} else {
				t->errors++;
			}
			slots[k].msgid = 0;
			inflight--;
		}
	}
	ldap_unbind_ext_s(ld, NULL, NULL);
	free(slots);
	return NULL;
fail:
	fprintf(stderr, "ldapload: connection to %s failed\n", o->uri);
	t->errors++;
	if (ld)
		ldap_unbind_ext_s(ld, NULL, NULL);
	free(slots);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void usage(FILE *fp)
{
	fputs("usage: ldapload -H URI -D BINDDN -w PASSWORD -b BASE [-n OPS] [-u USERS] [-f FIRST]\n"
	      "                [-c CONNS] [-d DEPTH] [-r RATE] [-a ATTR] [-v VALUE] [-x] [-t FILE]\n"
	      "Modifies uid=uNNNNNN,BASE (ATTR, default description) and prints throughput and\n"
	      "latency percentiles. -x: each operation on a different user. -t: completion times.\n",
	      fp);
}

int main(int argc, char **argv)
{
	struct opts o = { .base = "ou=people,dc=example,dc=com", .attr = "description",
	                  .ops = 10000, .users = 10000, .first = 1, .conns = 4, .depth = 8 };
	struct thr *th;
	uint64_t *all, start, elapsed;
	long n = 0, errors = 0;
	FILE *times = NULL;
	int c;

	while ((c = getopt(argc, argv, "H:D:w:b:n:u:f:c:d:r:a:v:xt:h")) != -1) {
		switch (c) {
		case 'H': o.uri = optarg; break;
		case 'D': o.binddn = optarg; break;
		case 'w': o.pw = optarg; break;
		case 'b': o.base = optarg; break;
		case 'n': o.ops = atol(optarg); break;
		case 'u': o.users = atol(optarg); break;
		case 'f': o.first = atol(optarg); break;
		case 'c': o.conns = atoi(optarg); break;
		case 'd': o.depth = atoi(optarg); break;
		case 'r': o.rate = atof(optarg); break;
		case 'a': o.attr = optarg; break;
		case 'v': o.value = optarg; break;
		case 'x': o.distinct = 1; break;
		case 't': o.times_file = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!o.uri || !o.binddn || !o.pw || o.ops <= 0 || o.users <= 0 || o.conns <= 0 ||
	    o.depth <= 0 || o.conns > 256 || o.depth > 1024) {
		usage(stderr);
		return 2;
	}
	if (o.rate > 0)
		o.depth = 1;  /* a steady rate: one op at a time per connection */
	if (o.times_file && !(times = fopen(o.times_file, "w"))) {
		perror(o.times_file);
		return 1;
	}
	th = calloc((size_t)o.conns, sizeof(*th));
	all = calloc((size_t)o.ops, sizeof(*all));
	if (!th || !all)
		return 1;
	t0 = start = now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < o.conns; i++) {
		th[i].o = &o;
		th[i].times = times;
		th[i].lat = calloc((size_t)o.ops, sizeof(uint64_t));
		if (!th[i].lat || pthread_create(&th[i].tid, NULL, run, &th[i]) != 0)
			return 1;
	}
	for (int i = 0; i < o.conns; i++) {
		pthread_join(th[i].tid, NULL);
		memcpy(all + n, th[i].lat, (size_t)th[i].nlat * sizeof(uint64_t));
		n += th[i].nlat;
		errors += th[i].errors;
		free(th[i].lat);
	}
	elapsed = now_ns(CLOCK_MONOTONIC) - start;
	if (times)
		fclose(times);
	qsort(all, (size_t)n, sizeof(*all), cmp_u64);
	printf("ops=%ld errors=%ld seconds=%.3f throughput=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f\n",
	       n, errors, (double)elapsed / 1e9, n ? (double)n / ((double)elapsed / 1e9) : 0.0,
	       n ? (double)all[n / 2] / 1e3 : 0.0, n ? (double)all[(n * 99) / 100] / 1e3 : 0.0,
	       n ? (double)all[n - 1] / 1e3 : 0.0);
	free(all);
	free(th);
	return errors ? 1 : 0;
}
