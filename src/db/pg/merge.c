/*
 * merge.c - upsert and update on PostgreSQL: the chunk COPYed into
 * a staging table of the target's types, merged into the table one run of
 * distinct keys at a time, a refused merge bisected down to its record
 * (table.c says how).
 */
#include "db/pg/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void idents(ns_buf *b, const pg_writer *w, const char *prefix, bool keys)
{
    for (size_t i = 0; i < (keys ? w->nkey : w->ncols); i++) {
        ns__buf_printf(b, "%s%s", i ? ", " : "", prefix);
        ns__buf_ident(b, w->cols[keys ? w->key[i] : i].name);
    }
}

/*
 * Creates the staging table of upsert and update (the table's column types,
 * none of its constraints; emptied by each commit), the statement that
 * merges staged rows [$1, $2) into the table, and the one that finds staged
 * rows repeating an earlier row's key.
 */
ns_status ns__pgw_stage(pg_writer *w, ns_error *err)
{
    ns_buf b = {0};
    ns_status st;
    size_t set = 0;

    ns__buf_printf(&b, "CREATE TEMP TABLE nightshift_stage ON COMMIT DELETE ROWS AS"
                       " SELECT NULL::bigint AS nightshift_seq, ");
    idents(&b, w, "", false);
    ns__buf_printf(&b, " FROM %s WITH NO DATA", w->qtable);
    if ((st = ns__pgw_exec(w, err, "staging table", "DROP TABLE IF EXISTS " STAGE, 0, NULL)) !=
            NS_OK ||
        (st = ns__pgw_exec(w, err, "staging table", ns__buf_cstr(&b), 0, NULL)) != NS_OK) {
        ns__buf_free(&b);
        return st;
    }

    /* The key's earlier occurrence, by the server's own equality (" 7" is 7). */
    b.len = 0;
    ns__buf_printf(&b,
                   "SELECT nightshift_seq, prev FROM (SELECT nightshift_seq, lag(nightshift_seq)"
                   " OVER (PARTITION BY ");
    idents(&b, w, "", true);
    ns__buf_printf(&b, " ORDER BY nightshift_seq) AS prev FROM " STAGE ") x"
                       " WHERE prev IS NOT NULL ORDER BY nightshift_seq");
    if (!(w->repeats_sql = ns__strdup(ns__buf_cstr(&b)))) {
        ns__buf_free(&b);
        return ns__err(err, NS_ENOMEM, NULL, "out of memory");
    }

    b.len = 0;
    if (w->mode == NS_MODE_UPSERT) {
        ns__buf_printf(&b, "INSERT INTO %s (", w->qtable);
        idents(&b, w, "", false);
        ns__buf_printf(&b, ") SELECT ");
        idents(&b, w, "", false);
        ns__buf_printf(&b, " FROM " STAGE " WHERE nightshift_seq >= $1 AND nightshift_seq < $2"
                           " ON CONFLICT (");
        idents(&b, w, "", true);
        ns__buf_printf(&b, ") DO ");
    } else {
        ns__buf_printf(&b, "WITH u AS (UPDATE %s AS t", w->qtable);
    }
    for (size_t i = 0; i < w->ncols; i++) {
        bool key = false;
        for (size_t k = 0; k < w->nkey; k++)
            key |= w->key[k] == i;
        if (key)
            continue;
        ns__buf_printf(&b, set++ ? ", " : w->mode == NS_MODE_UPSERT ? "UPDATE SET " : " SET ");
        ns__buf_ident(&b, w->cols[i].name);
        ns__buf_printf(&b, w->mode == NS_MODE_UPSERT ? " = excluded." : " = s.");
        ns__buf_ident(&b, w->cols[i].name);
    }
    if (w->mode == NS_MODE_UPSERT && !set)
        ns__buf_printf(&b, "NOTHING");
    if (w->mode == NS_MODE_UPDATE) {
        /* ... and the staged rows whose key matched no row. */
        ns__buf_printf(&b, " FROM " STAGE " s WHERE s.nightshift_seq >= $1"
                           " AND s.nightshift_seq < $2");
        for (size_t k = 0; k < w->nkey; k++) {
            ns__buf_printf(&b, " AND t.");
            ns__buf_ident(&b, w->cols[w->key[k]].name);
            ns__buf_printf(&b, " = s.");
            ns__buf_ident(&b, w->cols[w->key[k]].name);
        }
        ns__buf_printf(&b, " RETURNING s.nightshift_seq) SELECT nightshift_seq FROM " STAGE
                           " st WHERE nightshift_seq >= $1 AND nightshift_seq < $2 AND NOT EXISTS"
                           " (SELECT 1 FROM u WHERE u.nightshift_seq = st.nightshift_seq)");
    }
    if (w->mode == NS_MODE_UPDATE && !set)
        st = ns__err(err, NS_ESCHEMA, NULL, "%s: mode: update needs input columns besides the key",
                     w->where);
    else if (!(w->merge_sql = ns__strdup(ns__buf_cstr(&b))))
        st = ns__err(err, NS_ENOMEM, NULL, "out of memory");
    ns__buf_free(&b);
    return st;
}

/*
 * Merges staged rows [lo, hi) into the table (upsert, update). A range the
 * server refuses is halved, earlier half first, until the record at fault
 * is alone and rejected; update also rejects the records whose key matched
 * no row.
 */
static ns_status merge(pg_writer *w, ns_item *items, size_t lo, size_t hi, ns_arena *a,
                       ns_error *err)
{
    char l[24], h[24];
    const char *p[] = {l, h};
    copy_error e = {0};
    ns_status st;

    if (lo >= hi)
        return NS_OK;
    snprintf(l, sizeof(l), "%zu", lo);
    snprintf(h, sizeof(h), "%zu", hi);
    if ((st = ns__pgw_exec(w, err, "savepoint", "SAVEPOINT ns_merge", 0, NULL)) != NS_OK)
        return st;
    PGresult *res = PQexecParams(w->c, w->merge_sql, 2, NULL, p, NULL, NULL, 0);
    ExecStatusType rs = PQresultStatus(res);
    if (rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK) {
        for (int r = 0; rs == PGRES_TUPLES_OK && r < PQntuples(res); r++) {
            size_t line = (size_t)strtoull(PQgetvalue(res, r, 0), NULL, 10);
            if (line < w->lines)
                ns__pgw_reject(&items[w->item[line]], "NS_NO_ROW", NULL,
                               "no row of the table has this key", a);
        }
        PQclear(res);
        return ns__pgw_exec(w, err, "savepoint", "RELEASE SAVEPOINT ns_merge", 0, NULL);
    }
    ns__pgw_read_error(res, &e);
    if (!e.row_level) {
        st = ns__pgw_fail(w, res, err, w->mode == NS_MODE_UPSERT ? "upsert" : "update");
        PQclear(res);
        return st;
    }
    PQclear(res);
    if ((st = ns__pgw_rollback_to(w, "ns_merge", err)) != NS_OK)
        return st;
    if (hi - lo == 1) {
        ns__pgw_reject(&items[w->item[lo]], e.code, e.column[0] ? e.column : NULL, e.message, a);
        return NS_OK;
    }
    size_t mid = lo + (hi - lo) / 2;
    if ((st = merge(w, items, lo, mid, a, err)) != NS_OK)
        return st;
    return merge(w, items, mid, hi, a, err);
}

/*
 * Merges the staged chunk in runs of distinct keys, in file order: a key met
 * earlier in the current run starts the next run. So every record is applied
 * (and checked) after the records before it, as if one by one, and the last
 * record of a key is the one the table keeps.
 */
ns_status ns__pgw_merge_chunk(pg_writer *w, ns_item *items, ns_arena *a, ns_error *err)
{
    ns_status st = NS_OK;
    size_t from = 0;
    PGresult *res = PQexec(w->c, w->repeats_sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        st = ns__pgw_fail(w, res, err, "find repeated keys");
        PQclear(res);
        return st;
    }
    for (int r = 0; r < PQntuples(res) && st == NS_OK; r++) {
        size_t seq = (size_t)strtoull(PQgetvalue(res, r, 0), NULL, 10);
        size_t prev = (size_t)strtoull(PQgetvalue(res, r, 1), NULL, 10);
        if (prev >= from) {
            st = merge(w, items, from, seq, a, err);
            from = seq;
        }
    }
    PQclear(res);
    return st != NS_OK ? st : merge(w, items, from, w->lines, a, err);
}
