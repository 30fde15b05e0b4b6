/*
id: PIN_SPANS_WRITEBACK
severity: critical
confidence: certain
means: A writable pin (pin_user_pages with FOLL_WRITE, or a get_user_pages FOLL_GET|FOLL_WRITE
  reference) on a file page was held while the kernel cleaned the page (page_mkclean /
  folio_mkclean) or started writing it back. The pinning device could write the page by DMA at
  any time during that span, bypassing write-protection and ->page_mkwrite.
predicts: Stable-pages violation: data and checksum (or RAID parity) on disk disagree; the page
  is redirtied behind the filesystem's back, leading to buffer-less dirty pages (ext4 warning
  and BUG_ON before 5.18, dropped data since).
cannot_prove: That the device actually wrote during writeback: DMA is never in the trace. This
  is proof of exposure, not of corruption.
references: Jan Kara, "Filesystem crashes due to pages without buffers" (linux-mm, Jan 2018);
  "[LSFMM] RDMA data corruption potential during FS writeback" (May 2018); LWN 753027, 774411;
  Documentation/core-api/pin_user_pages.rst; docs/rules.md
grain: one finding per writable_pinned interval
evidence: pin start, each mkclean / wb_start / wb_end inside the span, pin end
*/
-- A mark is strictly inside a writable_pinned span of its page exactly when writable pins were
-- held before it (a mark takes and drops no pin): those marks first (one scan), then only their
-- pages' spans.
WITH marks AS (
    SELECT trace_id, page_id, ts_ns, line, kind::VARCHAR AS kind, ino, cached_before
    FROM page_events
    WHERE writable_pins_before > 0 AND kind IN ('mkclean', 'wb_start', 'wb_end')
),
-- one aggregate row to the planner: keeps the few marks on the build side of the span join
few_marks AS (
    SELECT unnest(list(m), recursive := true) FROM marks m
),
-- the spans' own columns ride along, so that intervals is read once
hits AS (
    SELECT s.trace_id, s.page_id, s.start_ts_ns, s.start_line, s.end_ts_ns, s.end_line, s.pfn,
        s.dev, s.ino, s."index", s.holders, m.kind, m.line,
        m.kind IN ('mkclean', 'wb_start')
            AND (s.ino IS NOT NULL OR m.ino IS NOT NULL OR coalesce(m.cached_before, false))
            AS fires
    FROM intervals s
    JOIN few_marks m ON m.trace_id = s.trace_id AND m.page_id = s.page_id
    WHERE s.state = 'writable_pinned'
      AND (s.start_line IS NULL OR m.ts_ns > s.start_ts_ns
           OR (m.ts_ns = s.start_ts_ns AND m.line > s.start_line))
      AND (s.end_line IS NULL OR m.ts_ns < s.end_ts_ns
           OR (m.ts_ns = s.end_ts_ns AND m.line < s.end_line))
),
-- one row per span (a page's writable_pinned spans never share a start)
spans AS (
    SELECT trace_id, page_id, start_ts_ns, start_line,
        any_value(end_ts_ns) AS end_ts_ns, any_value(end_line) AS end_line,
        any_value(pfn) AS pfn, any_value(dev) AS dev, any_value(ino) AS ino,
        any_value("index") AS "index", any_value(holders) AS holders,
        list(line ORDER BY line) AS lines,
        count(*) FILTER (WHERE kind = 'mkclean') AS n_mkclean,
        count(*) FILTER (WHERE kind = 'wb_start') AS n_wb
    FROM hits
    GROUP BY trace_id, page_id, start_ts_ns, start_line
    HAVING bool_or(fires)
)
SELECT
    'PIN_SPANS_WRITEBACK' AS rule,
    'critical' AS severity,
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
    printf('writable pin by %s (caller %s) on %s held across %s%s%s: a device can write the page '
           || 'by DMA while it is cleaned or under writeback (stable-pages violation)%s',
        coalesce(s.holders[1].comm || '/' || s.holders[1].pid::VARCHAR, 'a task before the trace'),
        coalesce(s.holders[1].caller, '?'),
        CASE WHEN s.pfn IS NOT NULL THEN printf('pfn 0x%x', s.pfn) ELSE s.page_id END,
        CASE WHEN s.n_mkclean > 0 THEN printf('%d mkclean', s.n_mkclean) ELSE '' END,
        CASE WHEN s.n_mkclean > 0 AND s.n_wb > 0 THEN ' and ' ELSE '' END,
        CASE WHEN s.n_wb > 0 THEN printf('%d writeback', s.n_wb) ELSE '' END,
        CASE WHEN s.end_line IS NULL THEN ' (pin still held at the end of the trace)' ELSE '' END
    ) AS message
FROM spans s
