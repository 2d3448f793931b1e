//! The scenarios: what load each applies and how plinth is configured for it.

/// One way of loading plinth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Cached,
    CachedShared,
    L2,
    Db,
    /// `db` with `PLINTH_DATABASE_STATEMENT_CACHE=false` (as behind PgBouncer in transaction
    /// mode): what preparing each statement afresh costs the lists.
    DbNoStatementCache,
    Tenant,
    Mixed,
    /// `mixed` with the audit log off (`PLINTH_AUDIT=false`): what auditing costs the writes.
    MixedUnaudited,
    Jobs,
    /// `jobs` while one more tenant holds a backlog of [`FLOOD`] ready jobs.
    JobsFlood,
    /// The open-loop capacity search over a SaaS mix (`capacity.rs`), on its own data set.
    Capacity,
    /// Password-reset requests for members' addresses and unknown ones, side by side
    /// (`enumeration.rs`): the same answer, and the same latency within a tolerance.
    ResetEnumeration,
}

/// The backlog of the flooding tenant in `jobs-flood`.
pub const FLOOD: u64 = 50_000;

/// What a scenario's clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// `GET /v1/projects` with each tenant's token and host.
    List,
    /// `GET /v1/tenant` with each tenant's host, no token.
    Tenant,
    /// 9 lists, then 1 `POST /v1/projects`, over and over.
    Mixed,
    /// No HTTP: a backlog of no-op jobs the worker drains.
    Jobs,
    /// The capacity driver's mix at fixed arrival rates, stepped up (not wrk).
    Capacity,
    /// `POST /v1/auth/password-reset` with each tenant's host, no token, for a member's address
    /// or an unknown one, closed loop (not wrk).
    Reset,
}

/// What a scenario is compared to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    Ceiling,
    Pgbench,
}

impl Reference {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ceiling => "ceiling",
            Self::Pgbench => "pgbench",
        }
    }
}

impl Scenario {
    /// Every scenario, in the order a full run measures them (references are interleaved).
    pub const ALL: [Self; 12] = [
        Self::Cached,
        Self::CachedShared,
        Self::L2,
        Self::Db,
        Self::DbNoStatementCache,
        Self::Tenant,
        Self::Mixed,
        Self::MixedUnaudited,
        Self::Jobs,
        Self::JobsFlood,
        Self::Capacity,
        Self::ResetEnumeration,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::CachedShared => "cached-shared",
            Self::L2 => "l2",
            Self::Db => "db",
            Self::DbNoStatementCache => "db-no-statement-cache",
            Self::Tenant => "tenant",
            Self::Mixed => "mixed",
            Self::MixedUnaudited => "mixed-unaudited",
            Self::Jobs => "jobs",
            Self::JobsFlood => "jobs-flood",
            Self::Capacity => "capacity",
            Self::ResetEnumeration => "reset-enumeration",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a run without named scenarios measures it: all but `reset-enumeration`, whose
    /// warm-up and window would add over 30 s to a full run for a figure that changes only when
    /// the reset route does.
    pub fn by_default(self) -> bool {
        self != Self::ResetEnumeration
    }

    /// Whether plinth gets `REDIS_URL` (the shared limiter, L2 and generations through Redis).
    pub fn redis(self) -> bool {
        !matches!(self, Self::Cached | Self::Db | Self::DbNoStatementCache)
    }

    /// Whether `PLINTH_L1_CACHE_MB` is raised to hold every tenant's page: the scenarios that
    /// measure serving from L1. The others (`mixed` among them, whose RSS has a target) keep the
    /// default 32 MiB.
    pub fn holds_the_hot_set_in_l1(self) -> bool {
        matches!(self, Self::Cached | Self::CachedShared)
    }

    /// Whether its warm-up goes on until the cache has settled: the read-only loads served from
    /// a cache (`mixed` invalidates as it writes, so it never settles).
    pub fn settles(self) -> bool {
        self.cache() != "off" && matches!(self.load(), Load::List | Load::Tenant)
    }

    /// `PLINTH_CACHE_TTL_S`: `db` caches no tenant data (every list is read from PostgreSQL
    /// under RLS) while the tenant and token checks stay cached, as they are in production.
    pub fn data_ttl(self) -> Option<&'static str> {
        matches!(self, Self::Db | Self::DbNoStatementCache).then_some("0")
    }

    /// `PLINTH_CACHE`.
    pub fn cache(self) -> &'static str {
        match self {
            Self::Cached => "l1",
            Self::L2 => "l2",
            Self::Db | Self::DbNoStatementCache => "l1",
            Self::CachedShared
            | Self::Tenant
            | Self::Mixed
            | Self::MixedUnaudited
            | Self::Jobs
            | Self::JobsFlood
            | Self::Capacity
            | Self::ResetEnumeration => "l1,l2",
        }
    }

    pub fn load(self) -> Load {
        match self {
            Self::Cached | Self::CachedShared | Self::L2 | Self::Db | Self::DbNoStatementCache => Load::List,
            Self::Tenant => Load::Tenant,
            Self::Mixed | Self::MixedUnaudited => Load::Mixed,
            Self::Jobs | Self::JobsFlood => Load::Jobs,
            Self::Capacity => Load::Capacity,
            Self::ResetEnumeration => Load::Reset,
        }
    }

    /// The backlog one extra tenant holds while the jobs are measured, if any.
    /// Whether plinth records changes in its audit log (the default) in this scenario.
    pub fn audited(self) -> bool {
        self != Self::MixedUnaudited
    }

    /// Whether plinth keeps prepared statements across transactions (the default) in this
    /// scenario.
    pub fn statement_cache(self) -> bool {
        self != Self::DbNoStatementCache
    }

    pub fn flood(self) -> Option<u64> {
        matches!(self, Self::JobsFlood).then_some(FLOOD)
    }

    /// The reference measured just before this scenario, which its ratio is taken against.
    pub fn reference(self) -> Option<Reference> {
        match self {
            Self::Cached | Self::CachedShared => Some(Reference::Ceiling),
            Self::Db => Some(Reference::Pgbench),
            _ => None,
        }
    }

    /// The configuration, in words, for the report.
    pub fn setup(self) -> String {
        let limiter = if self.redis() { "Redis GCRA limiter" } else { "in-process limiter (governor)" };
        let what = match self.load() {
            Load::List => "GET /v1/projects (first page, 50 items)",
            Load::Tenant => "GET /v1/tenant (no token)",
            Load::Mixed => "90% GET /v1/projects, 10% POST /v1/projects",
            Load::Jobs => "no-op jobs drained by the in-process worker (PLINTH_WORKER_CONCURRENCY default 4)",
            Load::Capacity => {
                "open loop at fixed arrival rates, stepped up: 70% GET /v1/projects, 15% GET /v1/projects/{id}, \
                 8% POST /v1/projects, 4% PATCH /v1/projects/{id}, 2% DELETE /v1/projects/{id}, 1% POST \
                 /v1/auth/login (own data set; default L1 bound)"
            }
            Load::Reset => {
                "POST /v1/auth/password-reset (no token), a seeded member's address and an unknown one in turn, \
                 in a seeded random order, 8 in flight (closed loop); PLINTH_WORKER=true sends the queued \
                 messages meanwhile (to the log: no SMTP server is configured)"
            }
        };
        let redis = if self.redis() { "PostgreSQL + Redis" } else { "PostgreSQL, no REDIS_URL" };
        let l1 = if self.holds_the_hot_set_in_l1() { " (L1 sized to hold every tenant's page)" } else { "" };
        let flood = self
            .flood()
            .map(|n| format!(", while one more tenant holds {n} ready no-op jobs older than all of them (not counted)"))
            .unwrap_or_default();
        let ttl = self
            .data_ttl()
            .map(|t| format!(", PLINTH_CACHE_TTL_S={t} (lists from PostgreSQL every time)"))
            .unwrap_or_default();
        let statements = if self.statement_cache() {
            ""
        } else {
            ", PLINTH_DATABASE_STATEMENT_CACHE=false (no prepared statement kept)"
        };
        format!("{what}{flood}; {redis}; PLINTH_CACHE={}{l1}{ttl}{statements}; {limiter}", self.cache())
    }
}
