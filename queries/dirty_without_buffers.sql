/*
id: DIRTY_WITHOUT_BUFFERS
severity: critical
confidence: certain
means: A pinned page was marked dirty after its buffer heads were freed (try_to_free_buffers /
  filemap_release_folio once writeback cleaned it), with no ->page_mkwrite / write_begin in
  between to attach new ones. This is the get_user_pages -> DMA -> set_page_dirty -> put_page
  pattern after writeback and reclaim ran underneath the pin.
predicts: ext4 warns in ext4_set_page_dirty / ext4_dirty_folio and later hits BUG_ON in
  mpage_prepare_extent_to_map or ext4_writepage (kernel BUG at fs/ext4/inode.c) before 5.18;
  since 5.18 (cc5095747edf) ext4 warns "page does not have buffers attached" and drops the dirty
  bit: silent data loss.
cannot_prove: Which filesystem owns the page, and whether it relies on buffer heads at all; a
  filesystem without buffer heads (or with iomap) does not crash, although the write can still
  be lost.
references: Jan Kara, "Filesystem crashes due to pages without buffers" (linux-mm, Jan 2018);
  commit cc5095747edf "ext4: don't BUG if someone dirty pages without asking ext4 first";
  LWN 753027; docs/rules.md
grain: one finding per dirty event
evidence: the last free_buffers before the dirty, the dirty line, the start of the pin span
*/
WITH hits AS (
    SELECT trace_id, page_id, seq, line, ts_ns, pid, comm, caller, pfn, dev, ino, "index"
    FROM page_events
    -- held, hence on a page (pageless events have null state); the pushed-down filters are
    -- kind and buffers_before, which leave few dirties
    WHERE kind = 'dirty' AND buffers_before = 'no'
      AND (pins_before > 0 OR writable_pins_before > 0)
),
-- one aggregate row to the planner: the few pages go on the build side, and the scans below
-- are skipped when there are none
few_pages AS (
    SELECT unnest(list(DISTINCT {'trace_id': trace_id, 'page_id': page_id}), recursive := true)
    FROM hits
),
freed AS (
    SELECT e.trace_id, e.page_id, e.seq, e.line AS free_line, e.ts_ns AS free_ts
    FROM page_events e
    SEMI JOIN few_pages p ON p.trace_id = e.trace_id AND p.page_id = e.page_id
    WHERE e.kind = 'free_buffers'
),
with_free AS (
    SELECT h.*, f.free_line, f.free_ts
    FROM hits h
    ASOF LEFT JOIN freed f
        ON f.trace_id = h.trace_id AND f.page_id = h.page_id AND h.seq > f.seq
),
-- one aggregate row to the planner: keeps the few dirties on the build side of the span join
few AS (
    SELECT unnest(list(w), recursive := true)
    FROM (SELECT trace_id, page_id, ts_ns, line FROM with_free) w
),
spans AS (
    SELECT w.trace_id, w.line, i.start_line, i.start_ts_ns, i.holders, i.state,
        row_number() OVER (PARTITION BY w.trace_id, w.line
                           ORDER BY i.state = 'pinned' DESC, i.start_ts_ns) AS pick
    FROM few w
    JOIN intervals i ON i.trace_id = w.trace_id AND i.page_id = w.page_id
    WHERE i.state IN ('pinned', 'writable_pinned')
      AND (i.start_line IS NULL OR i.start_ts_ns < w.ts_ns
           OR (i.start_ts_ns = w.ts_ns AND i.start_line < w.line))
      AND (i.end_line IS NULL OR i.end_ts_ns > w.ts_ns
           OR (i.end_ts_ns = w.ts_ns AND i.end_line >= w.line))
)
SELECT
    'DIRTY_WITHOUT_BUFFERS' AS rule,
    'critical' AS severity,
    'certain' AS confidence,
    w.trace_id,
    w.pfn,
    w.dev,
    w.ino,
    w."index",
    w.pid,
    w.comm,
    coalesce(s.holders[1].caller, w.caller) AS caller,
    coalesce(s.start_ts_ns, w.free_ts, w.ts_ns) AS start_ts_ns,
    w.ts_ns AS end_ts_ns,
    list_sort(list_distinct([w.free_line, w.line, s.start_line])) AS evidence_lines,
    printf('%s/%d marked %s dirty while it was pinned%s and its buffers were freed (line %s) '
           || 'with no page_mkwrite since: ext4 warns and BUGs before 5.18, drops the data since',
        w.comm, w.pid,
        CASE WHEN w.pfn IS NOT NULL THEN printf('pfn 0x%x', w.pfn) ELSE w.page_id END,
        CASE WHEN s.holders[1].pid IS NOT NULL
             THEN printf(' by %s/%d', s.holders[1].comm, s.holders[1].pid) ELSE '' END,
        coalesce(w.free_line::VARCHAR, '?')
    ) AS message
FROM with_free w
LEFT JOIN spans s ON s.trace_id = w.trace_id AND s.line = w.line AND s.pick = 1
