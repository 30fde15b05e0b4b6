/*
id: PIN_LEAK
severity: medium
confidence: heuristic
means: A pin taken during the trace was still held when the trace ended, and every task that
  took it had gone quiet at least a second before the end (a page freed under its pin is
  PAGE_FREED_WHILE_PINNED instead).
predicts: A leaked pin: the page can never be reclaimed or migrated (memory and compaction
  pressure, ZONE_MOVABLE / CMA failures), and every later writeback of it is exposed.
cannot_prove: That the pin is never released: the trace is a window, a long-lived registration
  (RDMA MR, io_uring fixed buffer) legitimately outlives it.
references: Documentation/core-api/pin_user_pages.rst (nr_foll_pin_acquired /
  nr_foll_pin_released in /proc/vmstat); docs/rules.md
grain: one finding per open pinned interval
evidence: pin start, the holders' last lines
*/
WITH spans AS (
    SELECT *, row_number() OVER () AS span_id
    FROM intervals
    WHERE state = 'pinned' AND open_at_end AND NOT open_at_start
),
bounds AS (
    SELECT e.trace_id, max(e.ts_ns) AS last_ts
    FROM (SELECT trace_id, ts_ns FROM events
          UNION ALL SELECT trace_id, ts_ns FROM other_events) e
    -- only the open spans' traces: the join skips the scans when there are none
    JOIN (SELECT DISTINCT trace_id FROM spans) s ON s.trace_id = e.trace_id
    GROUP BY e.trace_id
),
-- only the open spans' pages, as above
freed AS (
    SELECT DISTINCT f.trace_id, f.page_id
    FROM page_events f
    JOIN (SELECT DISTINCT trace_id, page_id FROM spans) s
      ON s.trace_id = f.trace_id AND s.page_id = f.page_id
    WHERE f.kind = 'free'
),
holders AS (
    SELECT DISTINCT span_id, trace_id, unnest(holders).pid AS pid
    FROM spans
),
last_seen AS (
    SELECT e.trace_id, e.pid, max(e.ts_ns) AS last_ts, arg_max(e.line, e.ts_ns) AS last_line
    FROM events e
    WHERE (e.trace_id, e.pid) IN (SELECT (trace_id, pid) FROM holders)
    GROUP BY ALL
),
quiet AS (
    SELECT h.span_id, max(l.last_ts) AS last_ts, list(l.last_line) AS last_lines,
        bool_and(l.last_ts <= b.last_ts - 1000000000) AS all_quiet,
        any_value(b.last_ts) AS trace_last
    FROM holders h
    JOIN last_seen l ON l.trace_id = h.trace_id AND l.pid = h.pid
    JOIN bounds b ON b.trace_id = h.trace_id
    GROUP BY h.span_id
)
SELECT
    'PIN_LEAK' AS rule,
    'medium' AS severity,
    'heuristic' AS confidence,
    s.trace_id,
    s.pfn,
    s.dev,
    s.ino,
    s."index",
    s.holders[1].pid AS pid,
    s.holders[1].comm AS comm,
    s.holders[1].caller AS caller,
    s.start_ts_ns,
    s.end_ts_ns,
    list_sort(list_distinct(list_concat([s.start_line], q.last_lines))) AS evidence_lines,
    printf('pin on %s by %s (caller %s) still held at the end of the trace; its holder was '
           || 'last seen %.1f s before the end',
        CASE WHEN s.pfn IS NOT NULL THEN printf('pfn 0x%x', s.pfn) ELSE s.page_id END,
        coalesce(s.holders[1].comm || '/' || s.holders[1].pid::VARCHAR, '?'),
        coalesce(s.holders[1].caller, '?'),
        (q.trace_last - q.last_ts) / 1e9
    ) AS message
FROM spans s
JOIN quiet q USING (span_id)
WHERE q.all_quiet
  AND NOT EXISTS (SELECT 1 FROM freed f WHERE f.trace_id = s.trace_id AND f.page_id = s.page_id)
