/*
id: PIN_SPANS_TRUNCATE
severity: high
confidence: certain
means: A page left the page cache (truncate, hole punch, invalidate) while a pin on it was
  held. The pinning device still holds the old page; whatever it writes afterwards lands in a
  page no file owns any more.
predicts: Lost writes: later DMA goes to an orphan page and set_page_dirty on it does nothing.
  On fsdax the page is the disk block itself, which can be reallocated to another file under
  active DMA (treat as critical there).
cannot_prove: That the device wrote after the removal, nor whether the mapping is fsdax (the
  trace does not say); a pin that is only read from loses nothing.
references: LWN 774411 "Fixing get_user_pages()"; Documentation/core-api/pin_user_pages.rst;
  Brian Foster, "generic/068 crash on 5.18-rc2?" (linux-fsdevel); docs/rules.md
grain: one finding per page and pin span (pinned preferred; a writable_pinned span inside a
  pinned one is the same span)
evidence: pin start, the truncate / cache_del lines, pin end
*/
-- A cut is strictly inside a pin span of its page exactly when the page was held before it (a
-- cut takes and drops no pin), so the held cuts are found first, with one scan per kind and
-- hold so that the Parquet reader pushes every filter down; then only their pages' spans.
WITH cuts AS (
    SELECT trace_id, page_id, ts_ns, line, true AS in_pinned
    FROM page_events WHERE kind = 'cache_del' AND pins_before > 0
    UNION ALL
    SELECT trace_id, page_id, ts_ns, line, true AS in_pinned
    FROM page_events WHERE kind = 'truncate' AND pins_before > 0
    UNION ALL
    SELECT trace_id, page_id, ts_ns, line, false AS in_pinned
    FROM page_events
    WHERE kind = 'cache_del' AND writable_pins_before > 0
      AND (pins_before <= 0 OR pins_before IS NULL)
    UNION ALL
    SELECT trace_id, page_id, ts_ns, line, false AS in_pinned
    FROM page_events
    WHERE kind = 'truncate' AND writable_pins_before > 0
      AND (pins_before <= 0 OR pins_before IS NULL)
),
-- one aggregate row to the planner: keeps the few cuts on the build side of the span join
few_cuts AS (
    SELECT unnest(list(c), recursive := true) FROM cuts c
),
-- a cut inside a pinned span is reported once, on the pinned span; the spans' own columns ride
-- along, so that intervals is read once
hits AS (
    SELECT s.trace_id, s.page_id, s.state, s.start_ts_ns, s.start_line, s.end_ts_ns, s.end_line,
        s.pfn, s.dev, s.ino, s."index", s.holders, c.line
    FROM intervals s
    JOIN few_cuts c ON c.trace_id = s.trace_id AND c.page_id = s.page_id
    WHERE s.state = CASE WHEN c.in_pinned THEN 'pinned' ELSE 'writable_pinned' END
      AND (s.start_line IS NULL OR c.ts_ns > s.start_ts_ns
           OR (c.ts_ns = s.start_ts_ns AND c.line > s.start_line))
      AND (s.end_line IS NULL OR c.ts_ns < s.end_ts_ns
           OR (c.ts_ns = s.end_ts_ns AND c.line < s.end_line))
),
-- one row per span (a page's spans of one state never share a start)
spans AS (
    SELECT trace_id, page_id, state, start_ts_ns, start_line,
        any_value(end_ts_ns) AS end_ts_ns, any_value(end_line) AS end_line,
        any_value(pfn) AS pfn, any_value(dev) AS dev, any_value(ino) AS ino,
        any_value("index") AS "index", any_value(holders) AS holders,
        list(line ORDER BY line) AS lines
    FROM hits
    GROUP BY trace_id, page_id, state, start_ts_ns, start_line
)
SELECT
    'PIN_SPANS_TRUNCATE' AS rule,
    'high' AS severity,
    'certain' AS confidence,
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
    list_sort(list_distinct(list_concat([s.start_line, s.end_line], s.lines))) AS evidence_lines,
    printf('%s left the page cache (truncate / hole punch / invalidate) while pinned by %s '
           || '(caller %s): later DMA into it is lost%s',
        CASE WHEN s.pfn IS NOT NULL THEN printf('pfn 0x%x', s.pfn) ELSE s.page_id END,
        coalesce(s.holders[1].comm || '/' || s.holders[1].pid::VARCHAR, 'a task before the trace'),
        coalesce(s.holders[1].caller, '?'),
        CASE WHEN s.end_line IS NULL THEN '; the pin is still held at the end of the trace'
             ELSE '' END
    ) AS message
FROM spans s
