/* pam_driver: a minimal PAM application for the integration tests.  It runs
 * the real Linux-PAM library on a service file from a test directory
 * (pam_start_confdir) and prints the name of what pam_acct_mgmt returned;
 * it also checks that a module loads on its own with RTLD_NOW.
 *
 *   pam_driver acct CONFDIR SERVICE USER [RHOST]
 *   pam_driver dlopen MODULE.so
 *
 * A module is a guest in the application: around pam_acct_mgmt the driver
 * checks that signal dispositions, umask and locale are unchanged and that
 * openlog/closelog were not called (the driver defines both and is linked
 * -export-dynamic, so a module's calls land here).
 *
 * Exit status: 0 when the call was made (whatever PAM answered), 1 when the
 * driver itself failed, 2 usage, 3 the module changed process state. */
#include <dlfcn.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <security/pam_appl.h>

static const char *const result_names[] = {
	[PAM_SUCCESS] = "PAM_SUCCESS",
	[PAM_OPEN_ERR] = "PAM_OPEN_ERR",
	[PAM_SYMBOL_ERR] = "PAM_SYMBOL_ERR",
	[PAM_SERVICE_ERR] = "PAM_SERVICE_ERR",
	[PAM_SYSTEM_ERR] = "PAM_SYSTEM_ERR",
	[PAM_BUF_ERR] = "PAM_BUF_ERR",
	[PAM_PERM_DENIED] = "PAM_PERM_DENIED",
	[PAM_AUTH_ERR] = "PAM_AUTH_ERR",
	[PAM_CRED_INSUFFICIENT] = "PAM_CRED_INSUFFICIENT",
	[PAM_AUTHINFO_UNAVAIL] = "PAM_AUTHINFO_UNAVAIL",
	[PAM_USER_UNKNOWN] = "PAM_USER_UNKNOWN",
	[PAM_MAXTRIES] = "PAM_MAXTRIES",
	[PAM_NEW_AUTHTOK_REQD] = "PAM_NEW_AUTHTOK_REQD",
	[PAM_ACCT_EXPIRED] = "PAM_ACCT_EXPIRED",
	[PAM_SESSION_ERR] = "PAM_SESSION_ERR",
	[PAM_CRED_UNAVAIL] = "PAM_CRED_UNAVAIL",
	[PAM_CRED_EXPIRED] = "PAM_CRED_EXPIRED",
	[PAM_CRED_ERR] = "PAM_CRED_ERR",
	[PAM_NO_MODULE_DATA] = "PAM_NO_MODULE_DATA",
	[PAM_CONV_ERR] = "PAM_CONV_ERR",
	[PAM_AUTHTOK_ERR] = "PAM_AUTHTOK_ERR",
	[PAM_AUTHTOK_RECOVERY_ERR] = "PAM_AUTHTOK_RECOVERY_ERR",
	[PAM_AUTHTOK_LOCK_BUSY] = "PAM_AUTHTOK_LOCK_BUSY",
	[PAM_AUTHTOK_DISABLE_AGING] = "PAM_AUTHTOK_DISABLE_AGING",
	[PAM_TRY_AGAIN] = "PAM_TRY_AGAIN",
	[PAM_IGNORE] = "PAM_IGNORE",
	[PAM_ABORT] = "PAM_ABORT",
	[PAM_AUTHTOK_EXPIRED] = "PAM_AUTHTOK_EXPIRED",
	[PAM_MODULE_UNKNOWN] = "PAM_MODULE_UNKNOWN",
	[PAM_BAD_ITEM] = "PAM_BAD_ITEM",
	[PAM_CONV_AGAIN] = "PAM_CONV_AGAIN",
	[PAM_INCOMPLETE] = "PAM_INCOMPLETE",
};

static int syslog_identity_calls;

/* Interpose syslog's identity functions: they belong to the application.
 * Default visibility: the build hides everything else. */
__attribute__((visibility("default")))
void openlog(const char *ident, int option, int facility)
{
	(void)ident; (void)option; (void)facility;
	syslog_identity_calls++;
}

__attribute__((visibility("default")))
void closelog(void)
{
	syslog_identity_calls++;
}

struct proc_state {
	struct sigaction sa[NSIG];
	mode_t mask;
	char locale[256];
};

static void proc_state_get(struct proc_state *st)
{
	int i;

	memset(st, 0, sizeof(*st));
	for (i = 1; i < NSIG; i++)
		sigaction(i, NULL, &st->sa[i]);
	st->mask = umask(022);
	umask(st->mask);
	snprintf(st->locale, sizeof(st->locale), "%s", setlocale(LC_ALL, NULL));
}

/* 0 when nothing the application owns was changed. */
static int proc_state_compare(const struct proc_state *a, const struct proc_state *b)
{
	int i, changed = 0;

	for (i = 1; i < NSIG; i++) {
		if (a->sa[i].sa_handler != b->sa[i].sa_handler ||
		    a->sa[i].sa_flags != b->sa[i].sa_flags) {
			fprintf(stderr, "pam_driver: the module changed the disposition of signal %d\n", i);
			changed = 1;
		}
	}
	if (a->mask != b->mask) {
		fprintf(stderr, "pam_driver: the module changed the umask\n");
		changed = 1;
	}
	if (strcmp(a->locale, b->locale) != 0) {
		fprintf(stderr, "pam_driver: the module changed the locale\n");
		changed = 1;
	}
	if (syslog_identity_calls) {
		fprintf(stderr, "pam_driver: the module called openlog/closelog\n");
		changed = 1;
	}
	return changed;
}

static const char *result_name(int rc)
{
	if (rc >= 0 && (size_t)rc < sizeof(result_names) / sizeof(result_names[0]) &&
	    result_names[rc])
		return result_names[rc];
	return "PAM_UNKNOWN_CODE";
}

/* An account module has no business talking to the user: refuse. */
static int no_conversation(int n, const struct pam_message **msg,
                           struct pam_response **resp, void *data)
{
	(void)n; (void)msg; (void)resp; (void)data;
	return PAM_CONV_ERR;
}

static int run_acct(const char *confdir, const char *service, const char *user,
                    const char *rhost)
{
	struct pam_conv conv = { no_conversation, NULL };
	struct proc_state before, after;
	pam_handle_t *pamh = NULL;
	int rc, changed;

	rc = pam_start_confdir(service, user, &conv, confdir, &pamh);
	if (rc != PAM_SUCCESS) {
		fprintf(stderr, "pam_driver: pam_start_confdir: %s\n", result_name(rc));
		return 1;
	}
	if (rhost && pam_set_item(pamh, PAM_RHOST, rhost) != PAM_SUCCESS) {
		fprintf(stderr, "pam_driver: pam_set_item PAM_RHOST failed\n");
		pam_end(pamh, PAM_SYSTEM_ERR);
		return 1;
	}
	proc_state_get(&before);
	rc = pam_acct_mgmt(pamh, PAM_SILENT);
	proc_state_get(&after);
	printf("%s\n", result_name(rc));
	fflush(stdout);
	pam_end(pamh, rc);
	changed = proc_state_compare(&before, &after);
	return changed ? 3 : 0;
}

static int run_dlopen(const char *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	int status = 0;

	if (!h) {
		fprintf(stderr, "pam_driver: dlopen: %s\n", dlerror());
		return 1;
	}
	if (!dlsym(h, "pam_sm_acct_mgmt")) {
		fprintf(stderr, "pam_driver: pam_sm_acct_mgmt not found\n");
		status = 1;
	}
	printf("%s\n", status ? "broken" : "loaded");
	dlclose(h);
	return status;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && argc <= 6 && strcmp(argv[1], "acct") == 0)
		return run_acct(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
	if (argc == 3 && strcmp(argv[1], "dlopen") == 0)
		return run_dlopen(argv[2]);
	fprintf(stderr, "usage: pam_driver acct CONFDIR SERVICE USER [RHOST]\n"
	                "       pam_driver dlopen MODULE.so\n");
	return 2;
}
