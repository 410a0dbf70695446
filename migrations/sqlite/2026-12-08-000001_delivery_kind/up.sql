-- What a delivery is, and so how a worker sends it (latch_core::model::DeliveryKind). Rows
-- recorded before kinds existed are back-channel logouts: the default says so.
ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'backchannel_logout';
