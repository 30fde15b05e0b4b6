/*
id: FORK_WHILE_PINNED
severity: high
confidence: certain
means: A process forked while it held a pin on an anonymous page, and afterwards the page was
  replaced (copy-on-write) in that same process while the pin was still held. The pin keeps
  the old page; the process's page tables now point at the copy.
predicts: The device and the process diverge: DMA writes land in a page the process no longer
  sees, or the process's writes never reach the device (Arcangeli's fork-vs-gup race). Fork
  copies maybe-pinned anon pages since 5.9, so FOLL_GET references and older kernels are the
  exposed cases. MADV_DONTFORK on the buffer avoids it.
cannot_prove: That the device used the buffer after the replace.
references: Andrea Arcangeli, fork vs get_user_pages race (2009); commit 70e806e4e645
  "mm: Do early cow for pinned pages during fork() for ptes" (5.9); LWN 930667; docs/rules.md
grain: one finding per (fork, page)
evidence: pin start, the fork line, the replace line
*/
WITH spans AS (
    SELECT *, row_number() OVER () AS span_id
    FROM intervals
    WHERE state IN ('pinned', 'writable_pinned') AND ino IS NULL
),
procs AS (
    SELECT trace_id, pid, max(tgid) AS tgid
    FROM page_events
    WHERE kind IN ('pin', 'get') AND tgid IS NOT NULL
    GROUP BY ALL
),
span_procs AS (
    SELECT DISTINCT s.span_id, s.trace_id, coalesce(p.tgid, h.pid) AS proc
    FROM (SELECT span_id, trace_id, unnest(holders) AS h FROM spans) s
    LEFT JOIN procs p ON p.trace_id = s.trace_id AND p.pid = s.h.pid
),
forks AS (
    SELECT trace_id, ts_ns, line, pid, comm, coalesce(tgid, pid) AS proc
    FROM page_events
    WHERE kind = 'fork'
),
fork_spans AS (
    SELECT s.*, f.line AS fork_line, f.ts_ns AS fork_ts, f.proc, f.pid AS fork_pid,
        f.comm AS fork_comm
    FROM forks f
    JOIN span_procs sp ON sp.trace_id = f.trace_id AND sp.proc = f.proc
    JOIN spans s ON s.span_id = sp.span_id
    WHERE (s.start_line IS NULL OR f.ts_ns > s.start_ts_ns
           OR (f.ts_ns = s.start_ts_ns AND f.line > s.start_line))
      AND (s.end_line IS NULL OR f.ts_ns < s.end_ts_ns
           OR (f.ts_ns = s.end_ts_ns AND f.line < s.end_line))
),
replaces AS (
    SELECT trace_id, page_id, ts_ns, line, coalesce(tgid, pid) AS proc
    FROM page_events
    WHERE kind = 'replace'  -- the join on page_id below leaves out pageless ones
),
matched AS (
    SELECT fs.*, r.line AS replace_line, r.ts_ns AS replace_ts,
        row_number() OVER (PARTITION BY fs.trace_id, fs.fork_line, fs.page_id
                           ORDER BY fs.state = 'pinned' DESC, r.ts_ns, r.line) AS pick
    FROM fork_spans fs
    JOIN replaces r ON r.trace_id = fs.trace_id AND r.page_id = fs.page_id AND r.proc = fs.proc
    WHERE (r.ts_ns > fs.fork_ts OR (r.ts_ns = fs.fork_ts AND r.line > fs.fork_line))
      AND (fs.end_line IS NULL OR r.ts_ns < fs.end_ts_ns
           OR (r.ts_ns = fs.end_ts_ns AND r.line <= fs.end_line))
)
SELECT
    'FORK_WHILE_PINNED' AS rule,
    'high' AS severity,
    'certain' AS confidence,
    trace_id,
    pfn,
    dev,
    ino,
    "index",
    holders[1].pid AS pid,
    holders[1].comm AS comm,
    holders[1].caller AS caller,
    start_ts_ns,
    replace_ts AS end_ts_ns,
    list_sort(list_distinct([start_line, fork_line, replace_line])) AS evidence_lines,
    printf('%s/%d forked (line %d) while %s was pinned by %s (caller %s); the page was then '
           || 'replaced by copy-on-write (line %d): the pin and the page tables now point at '
           || 'different pages',
        fork_comm, fork_pid, fork_line,
        CASE WHEN pfn IS NOT NULL THEN printf('pfn 0x%x', pfn) ELSE page_id END,
        coalesce(holders[1].comm || '/' || holders[1].pid::VARCHAR, '?'),
        coalesce(holders[1].caller, '?'),
        replace_line
    ) AS message
FROM matched
WHERE pick = 1
