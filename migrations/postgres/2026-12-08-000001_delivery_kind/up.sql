-- What a delivery is, and so how a worker sends it (latch_core::model::DeliveryKind). Rows
-- recorded before kinds existed are back-channel logouts: the default says so.
-- A constant default adds the column without rewriting the table (PostgreSQL 11 and later keep
-- it in the catalog for the rows already there); `fillfactor` stays, and no index covers the
-- column, so a claim is still a HOT update.
ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'backchannel_logout';
