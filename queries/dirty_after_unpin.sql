/*
id: DIRTY_AFTER_UNPIN
severity: high
confidence: certain
means: A task marked a page dirty after it had dropped its pin on it (unpin_user_page then
  set_page_dirty, instead of unpin_user_pages_dirty_lock or dirty-then-unpin). Once the last
  reference is gone the page can be reclaimed, truncated or reused.
predicts: The dirty lands on a page that may already belong to someone else (use after free of
  the page), or is lost because the page was freed in between.
cannot_prove: That the page actually changed owner in the window; the task may still hold a
  plain reference the trace did not record.
references: Documentation/core-api/pin_user_pages.rst; LWN 774411; docs/rules.md
grain: one finding per dirty event
evidence: the unpin line, the dirty line
*/
-- candidates first (the few unheld dirties), then only their pages' pin/unpin events
WITH dirties AS (
    SELECT trace_id, page_id, line, ts_ns, pid, comm, caller, pfn, dev, ino, "index"
    FROM page_events
    -- not held, on a page: page events always have counters, pageless ones have null state,
    -- and plain comparisons are pushed down into the Parquet scan
    WHERE kind = 'dirty' AND pins_before = 0 AND writable_pins_before = 0
),
-- one aggregate row to the planner: the few pages go on the build side, and the scan below is
-- skipped when there are none
few_pages AS (
    SELECT unnest(list(DISTINCT {'trace_id': trace_id, 'page_id': page_id}), recursive := true)
    FROM dirties
),
pins AS (
    SELECT e.trace_id, e.page_id, e.kind::VARCHAR AS p_kind, e.pid AS p_pid, e.line AS p_line,
        e.ts_ns AS p_ts, e.caller AS p_caller
    FROM page_events e
    SEMI JOIN few_pages p ON p.trace_id = e.trace_id AND p.page_id = e.page_id
    -- the page's last pin/unpin before an unheld dirty left it at 0 pins (only they move pins)
    WHERE e.kind IN ('pin', 'unpin') AND e.pins_after = 0
),
prev AS (
    SELECT d.*, p.p_kind, p.p_pid, p.p_line, p.p_ts, p.p_caller
    FROM dirties d
    ASOF JOIN pins p ON p.trace_id = d.trace_id AND p.page_id = d.page_id
        -- replay order is (ts_ns, line): comparing that pair spares reading `seq`
        AND (d.ts_ns, d.line) > (p.p_ts, p.p_line)
)
SELECT
    'DIRTY_AFTER_UNPIN' AS rule,
    'high' AS severity,
    'certain' AS confidence,
    trace_id,
    pfn,
    dev,
    ino,
    "index",
    pid,
    comm,
    coalesce(p_caller, caller) AS caller,
    p_ts AS start_ts_ns,
    ts_ns AS end_ts_ns,
    list_sort(list_distinct([p_line, line])) AS evidence_lines,
    printf('%s/%d marked %s dirty after unpinning it (line %d): the page may already be '
           || 'reclaimed or reused',
        comm, pid,
        CASE WHEN pfn IS NOT NULL THEN printf('pfn 0x%x', pfn) ELSE page_id END,
        p_line
    ) AS message
FROM prev
WHERE p_kind = 'unpin' AND p_pid = pid
