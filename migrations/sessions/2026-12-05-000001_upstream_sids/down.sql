DROP TABLE upstream_sids;
