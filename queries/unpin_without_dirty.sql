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
-- A dirty between a writable_pinned span's start and end is one with writable pins held before
-- it (a dirty takes and drops no pin, so it is never the start or end event): those dirties
-- only, then the spans that none falls in; the full span rows are read for those alone.
WITH spans AS (
    SELECT trace_id, page_id, start_ts_ns, start_line, end_ts_ns, end_line, ino
    FROM intervals
    WHERE state = 'writable_pinned' AND end_line IS NOT NULL
),
dirty_in AS (
    SELECT trace_id, page_id, ts_ns, line
    FROM page_events
    -- held, hence on a page (pageless events have null state)
    WHERE kind = 'dirty' AND writable_pins_before > 0
),
undirtied AS (
    SELECT s.*
    FROM spans s
    ANTI JOIN dirty_in d
        ON d.trace_id = s.trace_id AND d.page_id = s.page_id
       AND (s.start_line IS NULL OR d.ts_ns > s.start_ts_ns
            OR (d.ts_ns = s.start_ts_ns AND d.line >= s.start_line))
       AND (d.ts_ns < s.end_ts_ns OR (d.ts_ns = s.end_ts_ns AND d.line <= s.end_line))
),
-- the end events (writable pins dropped to 0) of file pages
file_ends AS (
    SELECT trace_id, line
    FROM page_events
    WHERE writable_pins_before > 0 AND writable_pins_after = 0
      AND (ino IS NOT NULL OR cached_before)
),
-- one aggregate row to the planner: the few undirtied spans go on the build side, and the
-- file_ends scan is skipped when there are none
few_undirtied AS (
    SELECT unnest(list(u), recursive := true) FROM undirtied u
),
flagged AS (
    SELECT u.trace_id, u.page_id, u.end_line
    FROM few_undirtied u
    WHERE u.ino IS NOT NULL
    UNION ALL
    SELECT u.trace_id, u.page_id, u.end_line
    FROM few_undirtied u
    SEMI JOIN file_ends e ON e.trace_id = u.trace_id AND e.line = u.end_line
    WHERE u.ino IS NULL
),
-- one aggregate row to the planner: keeps the few flagged spans on the build side
few AS (
    SELECT unnest(list(f), recursive := true) FROM flagged f
),
flagged_spans AS (
    SELECT s.*
    FROM intervals s
    JOIN few f
      ON f.trace_id = s.trace_id AND f.page_id = s.page_id AND f.end_line = s.end_line
    WHERE s.state = 'writable_pinned'
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
FROM flagged_spans s
