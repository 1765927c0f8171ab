/* fuzz_csv.c - libFuzzer harness for the CSV reader: any input must parse
 * without a crash or sanitizer report, and give the same records with a
 * tiny read size as with a large one. */
#include "io/csv.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static uint64_t digest(const char *data, size_t size, size_t read_size)
{
    ns_csv_options opt = {.read_size = read_size, .expect = 3, .check_utf8 = true};
    ns_csv *csv = NULL;
    const ns_csv_record *r;
    uint64_t h = 1469598103934665603ULL;

    if (ns__csv_open_mem(data, size, &opt, &csv, NULL) != NS_OK)
        return 0;
    while (ns__csv_next(csv, &r, NULL) == NS_OK && r) {
        h = (h ^ (uint64_t)r->line) * 1099511628211ULL;
        h = (h ^ (uint64_t)r->offset) * 1099511628211ULL;
        h = (h ^ (uint64_t)r->nfields) * 1099511628211ULL;
        for (size_t i = 0; i < r->nfields; i++) {
            const ns_value *v = &r->fields[i];
            h = (h ^ (v->ptr ? v->len + 1 : 0)) * 1099511628211ULL;
            for (size_t k = 0; v->ptr && k < v->len; k++)
                h = (h ^ (unsigned char)v->ptr[k]) * 1099511628211ULL;
        }
        h = (h ^ (uint64_t)(r->error_code ? r->error_code[3] : 0)) * 1099511628211ULL;
    }
    ns__csv_close(csv);
    return h;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    uint64_t a = digest((const char *)data, size, 1 << 16);
    uint64_t b = digest((const char *)data, size, 3);
    if (a != b)
        abort();
    return 0;
}
