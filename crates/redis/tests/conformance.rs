//! The cache-store, generation-store and rate-limiter suites against the Redis adapters, on
//! the shared Redis under a key prefix of this run's own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use plinth_redis::{RedisCache, RedisConn, RedisGenerations, RedisLimiter, RedisSettings};
use plinth_testkit::{redis_prefix, shared_redis_url};

fn conn() -> RedisConn {
    let mut settings = RedisSettings::new(vec![shared_redis_url()]);
    settings.prefix = redis_prefix();
    RedisConn::new(&settings).unwrap()
}

plinth_domain::cache_store_suite!(Arc::new(RedisCache::new(conn())));
plinth_domain::generation_store_suite!(Arc::new(RedisGenerations::start(conn())));
plinth_domain::rate_limiter_suite!(Arc::new(RedisLimiter::new(conn())));

/// The same behaviour with leases of up to 5% of a quota (the default).
mod leasing {
    use super::*;

    plinth_domain::rate_limiter_suite!(Arc::new(RedisLimiter::leasing(conn(), 5)));
}
