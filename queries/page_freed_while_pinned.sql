/*
id: PAGE_FREED_WHILE_PINNED
severity: critical
confidence: certain
means: A pfn was freed (mm_page_free) while the replay still counts pins or writable
  references on it. Either a pin was dropped without the trace seeing it, or the page really
  went back to the allocator under a pin.
predicts: Use after free by DMA: the device writes into memory that now belongs to another
  allocation (memory corruption far from the pinning driver).
cannot_prove: That the pin was really still held: a release the probes missed (an unprobed
  unpin path, a lost event) produces the same picture. Check `uncertain` and the probe set.
references: Documentation/core-api/pin_user_pages.rst; mm/gup.c (gup_put_folio); docs/rules.md
grain: one finding per free event
evidence: pin start, the free line
*/
-- held is `pins_before > 0 OR writable_pins_before > 0`, split in two disjoint scans so that the
-- Parquet reader pushes every filter down and reads nothing for pages never held (a held event
-- has a page: pageless events have null state)
WITH hits AS (
    SELECT trace_id, page_id, line, ts_ns, pid, comm, caller, pfn, dev, ino, "index",
        pins_before, writable_pins_before
    FROM page_events
    WHERE kind = 'free' AND pins_before > 0
    UNION ALL
    SELECT trace_id, page_id, line, ts_ns, pid, comm, caller, pfn, dev, ino, "index",
        pins_before, writable_pins_before
    FROM page_events
    WHERE kind = 'free' AND writable_pins_before > 0
      AND (pins_before <= 0 OR pins_before IS NULL)
),
-- one aggregate row to the planner: the few frees go on the build side, and the intervals scan
-- is skipped when there are none
few AS (
    SELECT unnest(list(h), recursive := true)
    FROM (SELECT trace_id, page_id, line, ts_ns FROM hits) h
),
spans AS (
    SELECT h.trace_id, h.line, i.start_line, i.start_ts_ns, i.holders,
        row_number() OVER (PARTITION BY h.trace_id, h.line
                           ORDER BY i.state = 'pinned' DESC, i.start_ts_ns) AS pick
    FROM few h
    JOIN intervals i ON i.trace_id = h.trace_id AND i.page_id = h.page_id
    WHERE i.state IN ('pinned', 'writable_pinned')
      AND (i.start_line IS NULL OR i.start_ts_ns < h.ts_ns
           OR (i.start_ts_ns = h.ts_ns AND i.start_line < h.line))
      AND (i.end_line IS NULL OR i.end_ts_ns > h.ts_ns
           OR (i.end_ts_ns = h.ts_ns AND i.end_line >= h.line))
)
SELECT
    'PAGE_FREED_WHILE_PINNED' AS rule,
    'critical' AS severity,
    'certain' AS confidence,
    h.trace_id,
    h.pfn,
    h.dev,
    h.ino,
    h."index",
    h.pid,
    h.comm,
    coalesce(s.holders[1].caller, h.caller) AS caller,
    coalesce(s.start_ts_ns, h.ts_ns) AS start_ts_ns,
    h.ts_ns AS end_ts_ns,
    list_sort(list_distinct([s.start_line, h.line])) AS evidence_lines,
    printf('%s freed by %s/%d while %d pin(s) were held%s: DMA into it is a use after free',
        CASE WHEN h.pfn IS NOT NULL THEN printf('pfn 0x%x', h.pfn) ELSE h.page_id END,
        h.comm, h.pid, greatest(h.pins_before, h.writable_pins_before),
        CASE WHEN s.holders[1].pid IS NOT NULL
             THEN printf(' (by %s/%d)', s.holders[1].comm, s.holders[1].pid) ELSE '' END
    ) AS message
FROM hits h
LEFT JOIN spans s ON s.trace_id = h.trace_id AND s.line = h.line AND s.pick = 1
