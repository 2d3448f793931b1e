-- Traces across the queue: a job keeps the W3C `traceparent` of the span that was current when
-- the write that enqueued it ran (set only when plinth exports traces), and the worker's span
-- for the job continues that trace. A retry or a rescue updates the job in place and keeps it;
-- a retry or recovery asked through the API makes the job continue the asking request's trace.
-- Only a version-00 value is stored (55 characters); the worker parses it again when it claims
-- the job and drops a malformed one. Like `jobs` itself, not a tenant table: it holds ids, not
-- tenant data, and the table grant to plinth_app covers the new column.
ALTER TABLE jobs ADD COLUMN traceparent text CHECK (octet_length(traceparent) = 55);
