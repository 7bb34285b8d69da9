-- Redis Cluster parts that need no cluster: seed URLs, and what a single
-- Redis looks like to the cluster views
-- seeds: every one is checked, the first is the endpoint; user info and
-- database apply to all
SELECT * FROM redis_sync.parse_url('redis://10.0.0.5:7000,10.0.0.6:7001,10.0.0.7/0');
SELECT * FROM redis_sync.parse_url('redis://app:s%40cret@h1:7000,h2:7001');
SELECT * FROM redis_sync.parse_url('redis://[::1]:7000,[::2]:7001/0');
-- a bad seed is named like a bad single URL (and the password never appears)
SELECT * FROM redis_sync.parse_url('redis://:secret@h1:7000,h2:notaport/0');
SELECT * FROM redis_sync.parse_url('redis://h1:7000,/0');
SELECT * FROM redis_sync.parse_url('redis://h1:7000,,h3:7002/0');
-- a single Redis: no cluster nodes, no cluster in worker_stats
SELECT count(*) FROM redis_sync.cluster_nodes();
SELECT cluster IS NULL AS single_redis FROM redis_sync.worker_stats;
