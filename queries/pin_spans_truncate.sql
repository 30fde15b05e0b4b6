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
WITH spans AS (
    SELECT *, row_number() OVER () AS span_id
    FROM intervals
    WHERE state IN ('pinned', 'writable_pinned')
),
cuts AS (
    SELECT trace_id, page_id, ts_ns, line, kind::VARCHAR AS kind
    FROM page_events
    WHERE kind IN ('cache_del', 'truncate') AND page_id IS NOT NULL
),
hits AS (
    SELECT s.span_id, s.state::VARCHAR AS state, s.trace_id, s.page_id, c.ts_ns, c.line
    FROM spans s
    JOIN cuts c ON c.trace_id = s.trace_id AND c.page_id = s.page_id
    WHERE (s.start_line IS NULL OR c.ts_ns > s.start_ts_ns
           OR (c.ts_ns = s.start_ts_ns AND c.line > s.start_line))
      AND (s.end_line IS NULL OR c.ts_ns < s.end_ts_ns
           OR (c.ts_ns = s.end_ts_ns AND c.line < s.end_line))
),
-- a cut inside a pinned span is reported once, on the pinned span
kept AS (
    SELECT h.*
    FROM hits h
    WHERE h.state = 'pinned'
       OR NOT EXISTS (
            SELECT 1 FROM hits p
            WHERE p.state = 'pinned' AND p.trace_id = h.trace_id AND p.line = h.line)
),
per_span AS (
    SELECT span_id, list(line ORDER BY line) AS lines, count(*) AS n
    FROM kept
    GROUP BY span_id
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
    list_sort(list_distinct(list_concat([s.start_line, s.end_line], p.lines))) AS evidence_lines,
    printf('%s left the page cache (truncate / hole punch / invalidate) while pinned by %s '
           || '(caller %s): later DMA into it is lost%s',
        CASE WHEN s.pfn IS NOT NULL THEN printf('pfn 0x%x', s.pfn) ELSE s.page_id END,
        coalesce(s.holders[1].comm || '/' || s.holders[1].pid::VARCHAR, 'a task before the trace'),
        coalesce(s.holders[1].caller, '?'),
        CASE WHEN s.end_line IS NULL THEN '; the pin is still held at the end of the trace'
             ELSE '' END
    ) AS message
FROM per_span p
JOIN spans s USING (span_id)
