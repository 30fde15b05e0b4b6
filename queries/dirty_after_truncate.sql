/*
id: DIRTY_AFTER_TRUNCATE
severity: high
confidence: certain
means: A pin holder marked a page dirty after the page had left the page cache (truncate or
  hole punch removed it earlier in the same lifetime of the pfn). The set_page_dirty that
  should have saved the device's write hits a page no file owns.
predicts: Silent data loss: the dirty bit on an orphan page is a no-op, the data the device
  wrote never reaches the file.
cannot_prove: That the data mattered: the file range may have been punched on purpose by the
  same application.
references: LWN 774411 "Fixing get_user_pages()"; Documentation/core-api/pin_user_pages.rst;
  docs/rules.md
grain: one finding per dirty event
evidence: the cache_del / truncate line, the dirty line
*/
WITH hits AS (
    SELECT trace_id, page_id, line, ts_ns, pid, comm, caller, pfn, dev, ino, "index"
    FROM page_events
    -- held, hence on a page (pageless events have null state); the pushed-down filters are
    -- kind and cached_before, which leave few dirties
    WHERE kind = 'dirty' AND cached_before = false
      AND (pins_before > 0 OR writable_pins_before > 0)
),
-- one aggregate row to the planner: the few pages go on the build side, and the scan below is
-- skipped when there are none
few_pages AS (
    SELECT unnest(list(DISTINCT {'trace_id': trace_id, 'page_id': page_id}), recursive := true)
    FROM hits
),
cuts AS (
    SELECT e.trace_id, e.page_id, e.line AS cut_line, e.ts_ns AS cut_ts,
        e.kind::VARCHAR AS cut_kind
    FROM page_events e
    SEMI JOIN few_pages p ON p.trace_id = e.trace_id AND p.page_id = e.page_id
    WHERE e.kind IN ('cache_del', 'truncate')
),
with_cut AS (
    SELECT h.*, c.cut_line, c.cut_ts, c.cut_kind
    FROM hits h
    ASOF JOIN cuts c ON c.trace_id = h.trace_id AND c.page_id = h.page_id
        -- replay order is (ts_ns, line): comparing that pair spares reading `seq`
        AND (h.ts_ns, h.line) > (c.cut_ts, c.cut_line)
),
-- one aggregate row to the planner: keeps the few dirties on the build side of the span join
few AS (
    SELECT unnest(list(w), recursive := true)
    FROM (SELECT trace_id, page_id, ts_ns, line FROM with_cut) w
),
spans AS (
    SELECT w.trace_id, w.line, i.holders,
        row_number() OVER (PARTITION BY w.trace_id, w.line
                           ORDER BY i.state = 'pinned' DESC, i.start_ts_ns) AS pick
    FROM few w
    JOIN (
        -- one scan per state so that the Parquet reader pushes the filter down
        SELECT * FROM intervals WHERE state = 'pinned'
        UNION ALL
        SELECT * FROM intervals WHERE state = 'writable_pinned'
    ) i ON i.trace_id = w.trace_id AND i.page_id = w.page_id
    WHERE (i.start_line IS NULL OR i.start_ts_ns < w.ts_ns
           OR (i.start_ts_ns = w.ts_ns AND i.start_line < w.line))
      AND (i.end_line IS NULL OR i.end_ts_ns > w.ts_ns
           OR (i.end_ts_ns = w.ts_ns AND i.end_line >= w.line))
)
SELECT
    'DIRTY_AFTER_TRUNCATE' AS rule,
    'high' AS severity,
    'certain' AS confidence,
    w.trace_id,
    w.pfn,
    w.dev,
    w.ino,
    w."index",
    w.pid,
    w.comm,
    coalesce(s.holders[1].caller, w.caller) AS caller,
    w.cut_ts AS start_ts_ns,
    w.ts_ns AS end_ts_ns,
    list_sort(list_distinct([w.cut_line, w.line])) AS evidence_lines,
    printf('%s/%d marked %s dirty after it left the page cache (%s at line %d): '
           || 'the dirty bit is a no-op, the data is gone',
        w.comm, w.pid,
        CASE WHEN w.pfn IS NOT NULL THEN printf('pfn 0x%x', w.pfn) ELSE w.page_id END,
        w.cut_kind, w.cut_line
    ) AS message
FROM with_cut w
LEFT JOIN spans s ON s.trace_id = w.trace_id AND s.line = w.line AND s.pick = 1
