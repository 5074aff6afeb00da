/* spool: the durable, maildir-style queue of DESIGN.md section 7.  A job is
 * on disk (written, fsync'd, renamed, directory fsync'd) before enqueue
 * returns.  Safe for many threads and processes. */
#ifndef OR_SPOOL_H
#define OR_SPOOL_H

#include <stddef.h>
#include "job.h"

enum spool_state { SPOOL_QUEUE, SPOOL_ACTIVE, SPOOL_DEFERRED, SPOOL_HELD, SPOOL_FAILED };
const char *spool_state_name(enum spool_state s);
int spool_state_from_name(const char *name); /* -1 unknown */

struct spool;

/* Opens (creating missing subdirectories, mode 0700).  Refuses a spool
 * directory that is group- or world-writable. (Also: a symlink or a
 * non-directory in place of it or of a subdirectory.  Run as root on a spool
 * owned by another user, what it creates is given to that user.) */
int spool_open(const char *dir, struct spool **out, char *err, size_t errlen);
void spool_close(struct spool *s);

/* Assigns j->id (and j->created if 0) and makes the job durable in queue/
 * (or deferred/ when j->next_attempt is in the future). */
int spool_enqueue(struct spool *s, struct job *j, char *err, size_t errlen);

/* The single-drainer lock (flock on spool_dir/lock).  1 taken, 0 held by
 * someone else, -1 error. */
int spool_lock(struct spool *s);
void spool_unlock(struct spool *s);

/* With the lock: active/ back to queue/ (start-up), deferred/ whose time has
 * come to queue/.  Return the number moved or -1.  spool_recover refuses to
 * run without the lock, removes an active/ copy whose job already reached
 * another state (a put cut short by a crash), and tmp/ files over an hour old. */
int spool_recover(struct spool *s);
int spool_promote_due(struct spool *s, int64_t now);

/* With the lock: the oldest job in queue/ moves to active/ and is returned.
 * 1 claimed, 0 nothing due, -1 error (also: not holding the lock).  An
 * unreadable record is moved to failed/ with a log line and skipped. */
int spool_claim(struct spool *s, struct job **out);

/* A claimed job is done: its file is removed. */
int spool_done(struct spool *s, const struct job *j);
/* A claimed job goes to STATE (queue, deferred, held, failed) with its
 * current fields rewritten durably. */
int spool_put(struct spool *s, const struct job *j, enum spool_state state);

/* Operator commands.  Ids are checked with job_id_valid (-1 otherwise).
 * spool_list and spool_find show an unreadable record as a placeholder job
 * (id, created, last_error "unreadable record: ..."), so it can be seen and
 * dropped.  spool_list goes oldest first; it returns 0, -1 on error, or the
 * first nonzero value of cb (which stops it). */
typedef int (*spool_list_cb)(enum spool_state st, const struct job *j, void *arg);
int spool_list(struct spool *s, int state /* -1: all */, spool_list_cb cb, void *arg);
/* Find by id in any state. 1 found, 0 not, -1 error.  out may be NULL. */
int spool_find(struct spool *s, const char *id, enum spool_state *st, struct job **out);
/* Move by id from its current state to TO (resetting next_attempt to 0 for
 * queue).  1 moved, 0 not found, -1 error (also: the job is active, or TO is
 * active).  spool_drop_id likewise refuses an active job. */
int spool_move_id(struct spool *s, const char *id, enum spool_state to);
int spool_drop_id(struct spool *s, const char *id);
int spool_count(struct spool *s, enum spool_state st);

/* The earliest next_attempt among deferred jobs, 0 when none. */
int64_t spool_next_due(struct spool *s);

const char *spool_dir(const struct spool *s);

#endif
