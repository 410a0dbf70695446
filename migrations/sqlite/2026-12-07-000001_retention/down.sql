DROP INDEX outbox_finished;
