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
WITH spans AS (
    SELECT *, row_number() OVER () AS span_id
    FROM intervals
    WHERE state = 'writable_pinned'
),
marks AS (
    SELECT trace_id, page_id, ts_ns, line, kind::VARCHAR AS kind, ino, cached_before
    FROM page_events
    WHERE kind IN ('mkclean', 'wb_start', 'wb_end') AND page_id IS NOT NULL
),
hits AS (
    SELECT s.span_id, m.kind, m.line,
        m.kind IN ('mkclean', 'wb_start')
            AND (s.ino IS NOT NULL OR m.ino IS NOT NULL OR coalesce(m.cached_before, false))
            AS fires
    FROM spans s
    JOIN marks m ON m.trace_id = s.trace_id AND m.page_id = s.page_id
    WHERE (s.start_line IS NULL OR m.ts_ns > s.start_ts_ns
           OR (m.ts_ns = s.start_ts_ns AND m.line > s.start_line))
      AND (s.end_line IS NULL OR m.ts_ns < s.end_ts_ns
           OR (m.ts_ns = s.end_ts_ns AND m.line < s.end_line))
),
per_span AS (
    SELECT span_id,
        list(line ORDER BY line) AS lines,
        count(*) FILTER (WHERE kind = 'mkclean') AS n_mkclean,
        count(*) FILTER (WHERE kind = 'wb_start') AS n_wb
    FROM hits
    GROUP BY span_id
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
    list_sort(list_distinct(list_concat([s.start_line, s.end_line], p.lines))) AS evidence_lines,
    printf('writable pin by %s (caller %s) on %s held across %s%s%s: a device can write the page '
           || 'by DMA while it is cleaned or under writeback (stable-pages violation)%s',
        coalesce(s.holders[1].comm || '/' || s.holders[1].pid::VARCHAR, 'a task before the trace'),
        coalesce(s.holders[1].caller, '?'),
        CASE WHEN s.pfn IS NOT NULL THEN printf('pfn 0x%x', s.pfn) ELSE s.page_id END,
        CASE WHEN p.n_mkclean > 0 THEN printf('%d mkclean', p.n_mkclean) ELSE '' END,
        CASE WHEN p.n_mkclean > 0 AND p.n_wb > 0 THEN ' and ' ELSE '' END,
        CASE WHEN p.n_wb > 0 THEN printf('%d writeback', p.n_wb) ELSE '' END,
        CASE WHEN s.end_line IS NULL THEN ' (pin still held at the end of the trace)' ELSE '' END
    ) AS message
FROM per_span p
JOIN spans s USING (span_id)
