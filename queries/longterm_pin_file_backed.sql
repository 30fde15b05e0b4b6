/*
id: LONGTERM_PIN_FILE_BACKED
severity: high
confidence: certain
means: A FOLL_LONGTERM pin (RDMA memory registration, vfio, io_uring fixed buffers) was taken on
  a page-cache page. A long-term pin on a file page outlives any writeback cycle, so every
  writeback of that page while the pin lasts is exposed.
predicts: All of PIN_SPANS_WRITEBACK's and PIN_SPANS_TRUNCATE's failures, for as long as the
  registration lives. Since 6.5 the kernel refuses FOLL_LONGTERM|FOLL_WRITE on dirty-tracked
  file mappings: seeing it succeed on 6.5+ is itself a kernel anomaly.
cannot_prove: Whether the mapping is dirty-tracked (shmem and hugetlbfs are allowed) or fsdax.
references: commit 84209e87c696 "mm/gup: disallow FOLL_LONGTERM GUP-nonfast writing to
  file-backed mappings" (6.5); LWN 930667; docs/rules.md
grain: one finding per longterm_pinned interval
evidence: pin start, and pin end when the pin was released
*/
WITH spans AS (
    SELECT *
    FROM intervals
    WHERE state = 'longterm_pinned'
),
-- one aggregate row to the planner: the few span starts go on the build side, and the
-- page_events scan is skipped when there are none
few_starts AS (
    SELECT unnest(list(DISTINCT {'trace_id': trace_id, 'line': start_line}), recursive := true)
    FROM spans
    WHERE start_line IS NOT NULL
),
starts AS (
    SELECT e.trace_id, e.line, e.ino, e.cached_before
    FROM page_events e
    SEMI JOIN few_starts f ON f.trace_id = e.trace_id AND f.line = e.line
    WHERE e.kind IN ('pin', 'get') AND e.page_id IS NOT NULL
)
SELECT
    'LONGTERM_PIN_FILE_BACKED' AS rule,
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
    list_sort(list_distinct([s.start_line, s.end_line])) AS evidence_lines,
    printf('long-term pin by %s (caller %s) on file page %s%s: every writeback while it lasts '
           || 'is exposed to DMA',
        coalesce(s.holders[1].comm || '/' || s.holders[1].pid::VARCHAR, '?'),
        coalesce(s.holders[1].caller, '?'),
        CASE WHEN s.pfn IS NOT NULL THEN printf('pfn 0x%x', s.pfn) ELSE s.page_id END,
        CASE WHEN s.ino IS NOT NULL
             THEN printf(' (ino %d, offset %d)', s.ino, s."index" * 4096) ELSE '' END
    ) AS message
FROM spans s
LEFT JOIN starts st ON st.trace_id = s.trace_id AND st.line = s.start_line
WHERE s.ino IS NOT NULL OR st.ino IS NOT NULL OR coalesce(st.cached_before, false)
