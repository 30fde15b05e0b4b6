/*
id: PAGE_REPLACED_WHILE_PINNED
severity: high
confidence: certain
means: A page was replaced (copy-on-write, migration, KSM merge, page forking as in Tux3) while
  a pin on it was held, and no fork by the pinning process explains it (that case is
  FORK_WHILE_PINNED). The pin and the page tables now refer to different pages.
predicts: DMA goes to the old page while the process and the page cache use the new one: lost
  writes or stale reads. Migration of pinned pages should fail (pinned pages are not movable),
  so a migration here is itself suspicious.
cannot_prove: That the device accessed the page after the replace.
references: Tux3 page-forking thread (linux-fsdevel, 2015); LWN 753027; docs/rules.md
grain: one finding per replace event
evidence: pin start, the replace line
*/
WITH hits AS (
    SELECT trace_id, page_id, line, ts_ns, pid, tgid, comm, caller, source_event, pfn, dev, ino,
        "index", new_pfn
    FROM page_events
    -- held, hence on a page (pageless events have null state)
    WHERE kind = 'replace' AND (pins_before > 0 OR writable_pins_before > 0)
),
-- one aggregate row to the planner: the few replaces' pages go on the build side, and the scans
-- below are skipped when there are none
few_pages AS (
    SELECT unnest(list(DISTINCT {'trace_id': trace_id, 'page_id': page_id}), recursive := true)
    FROM hits
),
spans AS (
    SELECT i.*, row_number() OVER () AS span_id
    FROM intervals i
    SEMI JOIN few_pages p ON p.trace_id = i.trace_id AND p.page_id = i.page_id
    WHERE i.state IN ('pinned', 'writable_pinned')
),
hit_spans AS (
    SELECT h.trace_id, h.line, s.span_id, s.state, s.start_line, s.start_ts_ns, s.holders,
        row_number() OVER (PARTITION BY h.trace_id, h.line
                           ORDER BY s.state = 'pinned' DESC, s.start_ts_ns) AS pick
    FROM hits h
    JOIN spans s ON s.trace_id = h.trace_id AND s.page_id = h.page_id
    WHERE (s.start_line IS NULL OR s.start_ts_ns < h.ts_ns
           OR (s.start_ts_ns = h.ts_ns AND s.start_line < h.line))
      AND (s.end_line IS NULL OR s.end_ts_ns > h.ts_ns
           OR (s.end_ts_ns = h.ts_ns AND s.end_line >= h.line))
),
-- the FORK_WHILE_PINNED condition, to leave its replaces to it
few_holders AS (
    SELECT unnest(list(DISTINCT {'trace_id': trace_id, 'pid': h.pid}), recursive := true)
    FROM (SELECT trace_id, unnest(holders) AS h FROM spans WHERE ino IS NULL)
),
procs AS (
    SELECT e.trace_id, e.pid, max(e.tgid) AS tgid
    FROM page_events e
    SEMI JOIN few_holders f ON f.trace_id = e.trace_id AND f.pid = e.pid
    WHERE e.kind IN ('pin', 'get') AND e.tgid IS NOT NULL
    GROUP BY ALL
),
span_procs AS (
    SELECT DISTINCT s.span_id, s.trace_id, coalesce(p.tgid, s.h.pid) AS proc
    FROM (SELECT span_id, trace_id, unnest(holders) AS h
          FROM spans WHERE ino IS NULL) s
    LEFT JOIN procs p ON p.trace_id = s.trace_id AND p.pid = s.h.pid
),
forks AS (
    SELECT trace_id, ts_ns, line, coalesce(tgid, pid) AS proc
    FROM page_events
    WHERE kind = 'fork'
),
explained AS (
    SELECT DISTINCT h.trace_id, h.line
    FROM hits h
    JOIN hit_spans hs ON hs.trace_id = h.trace_id AND hs.line = h.line
    JOIN span_procs sp ON sp.span_id = hs.span_id AND sp.proc = coalesce(h.tgid, h.pid)
    JOIN forks f ON f.trace_id = h.trace_id AND f.proc = sp.proc
    WHERE (hs.start_line IS NULL OR f.ts_ns > hs.start_ts_ns
           OR (f.ts_ns = hs.start_ts_ns AND f.line > hs.start_line))
      AND (f.ts_ns < h.ts_ns OR (f.ts_ns = h.ts_ns AND f.line < h.line))
)
SELECT
    'PAGE_REPLACED_WHILE_PINNED' AS rule,
    'high' AS severity,
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
    printf('%s replaced by %s (%s, by %s/%d) while pinned by %s: the pin and the page tables '
           || 'now point at different pages',
        CASE WHEN h.pfn IS NOT NULL THEN printf('pfn 0x%x', h.pfn) ELSE h.page_id END,
        CASE WHEN h.new_pfn IS NOT NULL THEN printf('pfn 0x%x', h.new_pfn) ELSE 'a new page' END,
        h.source_event, h.comm, h.pid,
        coalesce(s.holders[1].comm || '/' || s.holders[1].pid::VARCHAR, 'a task before the trace')
    ) AS message
FROM hits h
LEFT JOIN hit_spans s ON s.trace_id = h.trace_id AND s.line = h.line AND s.pick = 1
WHERE NOT EXISTS (SELECT 1 FROM explained x WHERE x.trace_id = h.trace_id AND x.line = h.line)
