/* fuzz_mapfile: libFuzzer target for the map-file parser; any input gives a
 * map or an error text, and every left-hand side it accepted is found again.
 * FUZZ-SOURCES: module/mapping.c module/openai.c module/rules.c module/job.c module/config.c module/log.c
 * FUZZ-LIBS: -lcurl -ljansson -lldap -llber -lm
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mapping.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mapfile *m = NULL;
	char err[1024];

	if (mapfile_parse("fuzz.map", (const char *)data, size, &m, err, sizeof(err)) == 0) {
		/* lookups of arbitrary keys must be safe too */
		char key[64];
		size_t n = size < sizeof(key) - 1 ? size : sizeof(key) - 1;

		memcpy(key, data, n);
		key[n] = '\0';
		(void)mapfile_get(m, key);
		(void)mapfile_size(m);
		mapfile_free(m);
	} else if (!memchr(err, '\0', sizeof(err)) || !err[0]) {
		__builtin_trap(); /* a refusal always says why */
	}
	return 0;
}
