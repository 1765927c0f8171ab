/*
 * csv.h - streaming RFC 4180 reader (docs/jobs.md, "Reader `csv`").
 *
 * Records are returned one at a time; their fields point into the reader's
 * buffer and stay valid until the next call on the reader. Nothing is
 * allocated per field. A record's position is its byte offset and start line,
 * so a restart seeks instead of re-reading.
 */
#ifndef NS_CSV_H
#define NS_CSV_H

#include "util/util.h"

typedef struct ns_value {
    const char *ptr; /* NULL for SQL NULL (an unquoted empty field) */
    size_t len;
} ns_value;

typedef struct ns_csv_options {
    char delimiter;   /* default ',' */
    char quote;       /* default '"' */
    size_t read_size; /* bytes per read(); default 1 MiB; 1 is valid (tests) */
    size_t expect;    /* expected field count; 0 = any */
    bool check_utf8;  /* reject records with invalid UTF-8 */
} ns_csv_options;

/* Stable reject codes of the reader. */
#define NS_CODE_FIELD_COUNT "NS_FIELD_COUNT"
#define NS_CODE_ENCODING    "NS_ENCODING"
#define NS_CODE_QUOTE       "NS_CSV_QUOTE"

typedef struct ns_csv_record {
    int64_t line;    /* 1-based physical line on which the record starts */
    int64_t offset;  /* byte offset of its first byte */
    int64_t end;     /* byte offset just past its terminator */
    const char *raw; /* record text without its line terminator */
    size_t raw_len;
    size_t nfields;
    const ns_value *fields;
    /* Set when the record is malformed (the fields are then unreliable). */
    const char *error_code; /* NULL or one of NS_CODE_* */
    int error_field;        /* index of the field at fault, -1 when none */
    char error_message[160];
} ns_csv_record;

typedef struct ns_csv ns_csv;

/* `name` is what messages call the file (it may differ from `path`, e.g. to
 * keep an ${env.X} out of them); NULL means `path`. */
ns_status ns__csv_open_path(const char *path, const char *name, const ns_csv_options *opt,
                            ns_csv **out, ns_error *err);
/* Reads from memory (not copied; must outlive the reader). */
ns_status ns__csv_open_mem(const char *data, size_t len, const ns_csv_options *opt, ns_csv **out,
                           ns_error *err);
void ns__csv_close(ns_csv *csv);
/* Changes the expected field count (after reading a header). */
void ns__csv_expect(ns_csv *csv, size_t nfields);
/*
 * Next record. At end of input returns NS_OK with *rec == NULL. An I/O error
 * returns NS_EIO. Malformed records are returned with error_code set.
 */
ns_status ns__csv_next(ns_csv *csv, const ns_csv_record **rec, ns_error *err);
/*
 * Positions the reader at a record boundary saved earlier (restart). With
 * `digest` (from ns__csv_digest at that position; NULL: not checked) the
 * bytes before it must be the ones the earlier run read: a file changed
 * before that point is refused (NS_ECONFLICT), since resuming would skip or
 * repeat records. `was` describes the file then, for the message.
 */
ns_status ns__csv_seek(ns_csv *csv, int64_t offset, int64_t line, const char *digest,
                       const char *was, ns_error *err);
/* A hash (XXH3, 16 hex digits) of the input consumed so far, [0, offset):
 * kept as the reader goes, so this costs nothing but the hashing. */
void ns__csv_digest(ns_csv *csv, char out[17]);
/* The input's modification time (seconds since the epoch), -1 when unknown. */
int64_t ns__csv_mtime(const ns_csv *csv);
/* Offset just past the last record returned, and the line that follows it. */
int64_t ns__csv_offset(const ns_csv *csv);
int64_t ns__csv_line(const ns_csv *csv);
/* Input size in bytes, -1 when unknown (a pipe). */
int64_t ns__csv_size(const ns_csv *csv);

#endif
