/* fuzz_config: libFuzzer target for the configuration parser; any input
 * must give a config or an error text, never a crash, leak or hang.
 * FUZZ-SOURCES: module/config.c module/log.c
 * FUZZ-LIBS: -lldap -llber
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
		if (config_filter_parse(buf, &attrs, err, sizeof(err)) == 0)
			config_list_free(attrs);
	}
	return 0;
}
