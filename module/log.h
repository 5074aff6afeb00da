/* log: syslog (or stderr) output and the key=value line builder that keeps
 * directory values from forging log lines. */
#ifndef OR_LOG_H
#define OR_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <syslog.h>

enum log_mode {
	LOG_MODE_DAEMON, /* openlog(ident, LOG_PID, facility) is ours to call */
	LOG_MODE_HOSTED, /* inside slapd / a PAM application: no openlog, facility in
	                    each priority, message prefixed "IDENT: " */
	LOG_MODE_STDERR  /* a command in a terminal or with -v */
};

/* Set once, before threads start.  file: also append every line there (or NULL). */
void log_setup(enum log_mode mode, const char *ident, int facility, int level,
               const char *file);
void log_teardown(void);
int log_enabled(int prio);

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(int prio, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* key=value lines, capped at LOG_LINE_MAX bytes; a cut line ends with
 * " truncated=1". Values that need it are quoted: "..." with \" \\ \n \r \t
 * and \xNN for other control bytes and bytes >= 0x7f that are not UTF-8. */
#define LOG_LINE_MAX 1024
struct logline {
	char buf[LOG_LINE_MAX + 32];
	size_t len;
	int cut;
};
void logline_init(struct logline *l);
void logline_add(struct logline *l, const char *key, const char *value);
void logline_addf(struct logline *l, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void logline_addi(struct logline *l, const char *key, long long value);
const char *logline_str(struct logline *l);
void log_line(int prio, struct logline *l);

/* Names for config: "authpriv" -> LOG_AUTHPRIV, "info" -> LOG_INFO; -1 unknown. */
int log_facility_from_name(const char *name);
int log_level_from_name(const char *name);
const char *log_level_name(int level);

#endif
