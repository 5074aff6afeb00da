/* worker: drains the spool: resolve -> protect -> breaker -> dry run ->
 * delete -> invites -> audit line, with retries by result class. */
#ifndef OR_WORKER_H
#define OR_WORKER_H

#include <stddef.h>
#include "config.h"
#include "spool.h"
#include "job.h"

struct worker;

/* key is copied (wiped memory).  The worker owns its spool handle, API
 * client and mapping. */
int worker_new(const struct config *cfg, const char *key, struct worker **out,
               char *err, size_t errlen);
void worker_free(struct worker *w);

/* Background thread (the plugin's worker_thread mode). */
int worker_start(struct worker *w);
void worker_notify(struct worker *w);  /* a job was enqueued in this process */
void worker_stop(struct worker *w);    /* finishes or returns the job in hand, joins */

/* Foreground: drain until nothing is due (once != 0) or until
 * worker_request_stop (signal-safe flag) is set.  0 ok, 1 some failure, -1 lock busy/error. */
int worker_run(struct worker *w, int once);
void worker_request_stop(struct worker *w);

/* Process one job now, outside the spool (revoke --now).  Returns the outcome
 * name written in the audit line ("removed", "not_member", ...) via *outcome.
 * The return value says what the caller does with J:
 *   WORKER_DONE   finished (removed, already_gone, not_member, exempt,
 *                 would_remove): nothing to keep;
 *   WORKER_QUEUE  retryable ("deferred": attempts, last_error and
 *                 next_attempt are set) or stopped by the breaker ("held"):
 *                 spool_enqueue it and the worker takes it from there;
 *   WORKER_FAILED needs a person ("protected", "failed": last_error says why);
 *   -1            invalid arguments. */
#define WORKER_DONE 0
#define WORKER_QUEUE 1
#define WORKER_FAILED 2
int worker_process_now(struct worker *w, struct job *j, const char **outcome);

/* The spool handle the worker uses (for enqueue in the same process). */
struct spool *worker_spool(struct worker *w);

#endif
