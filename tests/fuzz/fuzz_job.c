/* fuzz_job: libFuzzer target for the spool record reader; any input gives a
 * job or an error text, and an accepted job survives a round trip.
 * FUZZ-SOURCES: module/job.c module/log.c module/config.c
 * FUZZ-LIBS: -ljansson -lldap -llber
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	struct job *j = job_from_json((const char *)data, size, err, sizeof(err));

	if (j) {
		char *again = job_to_json(j);
		struct job *k = again ? job_from_json(again, strlen(again), err, sizeof(err)) : NULL;

		if (!again || !k || k->attempts != j->attempts || k->next_attempt != j->next_attempt)
			__builtin_trap(); /* what we accept we must be able to write back */
		job_free(k);
		free(again);
		job_free(j);
	} else if (!err[0]) {
		__builtin_trap();
	}
	return 0;
}
