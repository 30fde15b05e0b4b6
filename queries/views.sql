-- Helper views for ad hoc SQL (`pinscope sql` registers them before the rule views).
-- Each is one `CREATE VIEW name AS SELECT ...;` over the dataset's tables.

-- Each trace's first and last timestamp over every timestamped line (events and other events).
CREATE VIEW trace_bounds AS
SELECT trace_id, min(ts_ns) AS first_ts_ns, max(ts_ns) AS last_ts_ns
FROM (SELECT trace_id, ts_ns FROM events UNION ALL SELECT trace_id, ts_ns FROM other_events)
GROUP BY trace_id;

-- Pin spans with their first holder flattened out, lengths in seconds.
CREATE VIEW pin_spans AS
SELECT trace_id, page_id, pfn, dev, ino, "index", state, start_ts_ns, end_ts_ns, start_line,
    end_line, open_at_start, open_at_end, uncertain,
    holders[1].pid AS pid, holders[1].comm AS comm, holders[1].caller AS caller,
    (end_ts_ns - start_ts_ns) / 1e9 AS seconds
FROM intervals
WHERE state IN ('pinned', 'writable_pinned', 'longterm_pinned');

-- Events that happened while the page was held (a FOLL_PIN pin or a writable FOLL_GET).
CREATE VIEW held_events AS
SELECT *
FROM page_events
WHERE page_id IS NOT NULL AND (pins_before > 0 OR writable_pins_before > 0);
