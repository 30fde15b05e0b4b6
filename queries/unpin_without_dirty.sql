/*
id: UNPIN_WITHOUT_DIRTY
severity: high
confidence: heuristic
means: A writable pin on a file page was taken and released with no set_page_dirty /
  folio_mark_dirty on the page in between (unpin_user_pages instead of
  unpin_user_pages_dirty_lock). If the device wrote to the page, nothing told the page cache.
predicts: A DMA write can be dropped: reclaim or truncate frees the clean page and the data
  never reaches the file.
cannot_prove: That the device wrote at all: a writable pin used only for reading needs no
  dirtying. The dirty may also have been done by a path the trace did not probe.
references: Documentation/core-api/pin_user_pages.rst (unpin_user_pages_dirty_lock);
  John Hubbard, "[LSFMM] RDMA data corruption potential during FS writeback" (2018);
  docs/rules.md
grain: one finding per closed writable_pinned interval
evidence: pin start, pin end
*/
WITH spans AS (
    SELECT *, row_number() OVER () AS span_id
    FROM intervals
    WHERE state = 'writable_pinned' AND end_line IS NOT NULL
),
ends AS (
    SELECT s.span_id
    FROM spans s
    JOIN page_events e ON e.trace_id = s.trace_id AND e.line = s.end_line
    WHERE s.ino IS NOT NULL OR e.ino IS NOT NULL OR coalesce(e.cached_before, false)
),
dirtied AS (
    SELECT DISTINCT s.span_id
    FROM spans s
    JOIN page_events d ON d.trace_id = s.trace_id AND d.page_id = s.page_id
    WHERE d.kind = 'dirty'
      AND (s.start_line IS NULL OR d.ts_ns > s.start_ts_ns
           OR (d.ts_ns = s.start_ts_ns AND d.line >= s.start_line))
      AND (d.ts_ns < s.end_ts_ns OR (d.ts_ns = s.end_ts_ns AND d.line <= s.end_line))
)
SELECT
    'UNPIN_WITHOUT_DIRTY' AS rule,
    'high' AS severity,
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
    list_sort(list_distinct([s.start_line, s.end_line])) AS evidence_lines,
    printf('writable pin by %s (caller %s) on file page %s released without marking it dirty: '
           || 'a DMA write, if any, can be dropped by reclaim',
        coalesce(s.holders[1].comm || '/' || s.holders[1].pid::VARCHAR, '?'),
        coalesce(s.holders[1].caller, '?'),
        CASE WHEN s.pfn IS NOT NULL THEN printf('pfn 0x%x', s.pfn) ELSE s.page_id END
    ) AS message
FROM spans s
WHERE s.span_id IN (SELECT span_id FROM ends)
  AND s.span_id NOT IN (SELECT span_id FROM dirtied)
