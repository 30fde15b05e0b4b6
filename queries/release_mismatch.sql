/*
id: RELEASE_MISMATCH
severity: critical
confidence: certain
means: A release that the page's known history cannot pay for: an unpin of a FOLL_GET reference
  (unpin_user_page on a page from get_user_pages), a put_page of a FOLL_PIN pin, or a double
  release. Counted once the page's history is known (releases of references taken before the
  trace began are inferred, not flagged).
predicts: Refcount corruption: a pin of 1024 references dropped as 1 (or the reverse) leaves
  folio_maybe_dma_pinned wrong and the page leaked or freed under its user; VM_BUG_ON_FOLIO /
  "bad page state" on debug kernels.
cannot_prove: That the acquire was really missing: an unprobed acquire path (a gup variant not
  in the probe set) or a lost event gives the same picture.
references: John Hubbard, pin_user_pages() series (5.6/5.7); mm/gup.c (gup_put_folio,
  try_grab_folio); Documentation/core-api/pin_user_pages.rst; docs/rules.md
grain: one finding per mismatched event
evidence: the event's line, the last acquire before it if any
*/
WITH hits AS (
    SELECT trace_id, page_id, line, ts_ns, kind, pid, comm, caller, pfn, dev, ino, "index",
        pins_before, gets_before
    FROM page_events
    -- only page events have a `mismatch` (pageless ones have null state)
    WHERE mismatch
),
-- one aggregate row to the planner: the few pages go on the build side, and the scan below is
-- skipped when there are none
few_pages AS (
    SELECT unnest(list(DISTINCT {'trace_id': trace_id, 'page_id': page_id}), recursive := true)
    FROM hits
),
acquires AS (
    SELECT e.trace_id, e.page_id, e.line AS a_line, e.ts_ns AS a_ts, e.kind::VARCHAR AS a_kind,
        e.caller AS a_caller
    FROM page_events e
    SEMI JOIN few_pages p ON p.trace_id = e.trace_id AND p.page_id = e.page_id
    WHERE e.kind IN ('pin', 'get')
),
with_acq AS (
    SELECT h.*, a.a_line, a.a_ts, a.a_kind, a.a_caller
    FROM hits h
    ASOF LEFT JOIN acquires a
        ON a.trace_id = h.trace_id AND a.page_id = h.page_id
        -- replay order is (ts_ns, line): comparing that pair spares reading `seq`
        AND (h.ts_ns, h.line) > (a.a_ts, a.a_line)
)
SELECT
    'RELEASE_MISMATCH' AS rule,
    'critical' AS severity,
    'certain' AS confidence,
    trace_id,
    pfn,
    dev,
    ino,
    "index",
    pid,
    comm,
    coalesce(a_caller, caller) AS caller,
    coalesce(a_ts, ts_ns) AS start_ts_ns,
    ts_ns AS end_ts_ns,
    list_sort(list_distinct([a_line, line])) AS evidence_lines,
    printf('%s by %s/%d on %s with nothing of that kind left to release (pins %d, gets %d '
           || 'before it)%s',
        kind::VARCHAR, comm, pid,
        CASE WHEN pfn IS NOT NULL THEN printf('pfn 0x%x', pfn) ELSE page_id END,
        coalesce(pins_before, 0), coalesce(gets_before, 0),
        CASE
            WHEN kind = 'unpin' AND a_kind = 'get'
                THEN printf(': unpin of a FOLL_GET reference (get at line %d)', a_line)
            WHEN kind = 'put' AND a_kind = 'pin'
                THEN printf(': put of a FOLL_PIN pin (pin at line %d)', a_line)
            WHEN a_line IS NOT NULL THEN printf(': double release (last acquire at line %d)', a_line)
            ELSE ''
        END
    ) AS message
FROM with_acq
