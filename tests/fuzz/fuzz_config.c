/* fuzz_config: libFuzzer target for the configuration parser; any input
 * must give a config or an error text, never a crash, leak or hang.
 * FUZZ-SOURCES: module/config.c module/log.c
 * FUZZ-LIBS: -lldap -llber
 */
#include "config.h"

#include <lber.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* libldap's own filter encoder (exported, not in ldap.h): slapd parses
 * filters with it, so whatever we accept it must accept too */
int ldap_pvt_put_filter(BerElement *ber, const char *str);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[2048];
	struct config *cfg = NULL;

	if (config_parse_buffer("fuzz.conf", (const char *)data, size, &cfg, err, sizeof(err)) == 0) {
		/* a config that parsed must be complete */
		if (!cfg || !cfg->base || !cfg->api_url || !cfg->disabled_attrs)
			__builtin_trap();
		config_free(cfg);
	} else if (cfg || strlen(err) == 0) {
		__builtin_trap();
	}
	/* the same bytes as a lone filter exercise the RFC 4515 parser directly */
	if (size < 16384) {
		char buf[16384];
		char **attrs = NULL;
		memcpy(buf, data, size);
		buf[size] = '\0';
		if (config_filter_parse(buf, &attrs, err, sizeof(err)) == 0) {
			BerElement *ber = ber_alloc_t(LBER_USE_DER);
			if (ber && ldap_pvt_put_filter(ber, buf) != 0)
				__builtin_trap();
			ber_free(ber, 1);
			config_list_free(attrs);
		}
	}
	return 0;
}
