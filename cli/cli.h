/* cli.h - shared pieces of the nightshift command: each command is one file. */
#ifndef NS_CLI_H
#define NS_CLI_H

#include "nightshift.h"

#include <signal.h>
#include <stdbool.h>

typedef struct cli_opts {
    const char *repository;
    bool json, next;
    bool dry_run;        /* recover, purge --dry-run */
    bool with_files;     /* purge --with-files */
    const char *before;  /* purge --before */
    long long keep_last; /* purge --keep-last */
    bool plugins;        /* validate --plugins */
    long count;          /* schedule --count */
    const char *from;    /* schedule --from */
    long long tick;      /* run --tick */
    const char *job, *status;
    int limit;
    const char **args; /* positional arguments */
    int nargs;
    ns_checkpoint_use checkpoint; /* --adopt-checkpoint, --ignore-checkpoint */
} cli_opts;

/* Parses the command's options (its table in main.c: another command's
 * option is bad usage); returns false on bad usage, said on stderr. */
bool cli_parse(int argc, char **argv, cli_opts *o);
/* A whole decimal number (digits only: "5x", " 5", "+5" are not) in
 * [min, max]; false, said on stderr naming `what`, when it is not. */
bool cli_number(const char *what, const char *s, long long min, long long max, long long *out);
/* Prints a command's synopsis to stderr (after bad usage). */
void cli_usage(const char *command);
/* Prints an error as "nightshift: message" to stderr. */
void cli_error(const ns_error *err);
/* Opens the repository named by the options; prints the error on failure. */
ns_repo *cli_repo(const cli_opts *o);
/* The same to read only (list, show): never creates or migrates it. */
ns_repo *cli_repo_readonly(const cli_opts *o);
/* Parses an execution id argument; prints an error on failure. */
bool cli_exec_id(const char *s, int64_t *id);
/* The progress listener: live progress on a terminal, one line per step otherwise. */
const ns_listener *cli_listener(void);
/* $NIGHTSHIFT_LEASE as the launch's lease (0: unset, the library's 60 s);
 * false, said on stderr, when it is not a number of seconds in range. */
bool cli_lease(double *out);
/* Installs SIGINT/SIGTERM handlers that stop the job after its chunk:
 * they set the stop token a launch is given. */
void cli_signals(void);
volatile sig_atomic_t *cli_stop_token(void);
/* Prints the final line of a run and returns its exit code. */
int cli_outcome(ns_status st, const ns_outcome *out, const ns_error *err);

int cmd_run(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_abandon(int argc, char **argv);
int cmd_recover(int argc, char **argv);
int cmd_purge(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_schedule(int argc, char **argv);
int cmd_scheduler(int argc, char **argv);

#endif
