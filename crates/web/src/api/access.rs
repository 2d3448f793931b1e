//! What an API key may call: the one scope each route needs, or nothing at all. A person's
//! token is never checked here (their role decides, in the use cases); a key is refused
//! before its handler runs, and every route not listed is for people only, so a new route is
//! closed to keys until it is given a scope here.

use plinth_domain::values::Scope;

/// What a route allows an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A key with this scope (and a ceiling role that allows the change).
    Scope(Scope),
    /// People only: a key gets 403 `forbidden`.
    People,
}

/// Every route a key may call, by method and path template, with the scope it needs.
const SCOPED: &[(&str, &str, Scope)] = &[
    ("GET", "/v1/projects", Scope::ProjectsRead),
    ("POST", "/v1/projects", Scope::ProjectsWrite),
    ("GET", "/v1/projects/{id}", Scope::ProjectsRead),
    ("PATCH", "/v1/projects/{id}", Scope::ProjectsWrite),
    ("DELETE", "/v1/projects/{id}", Scope::ProjectsWrite),
    ("GET", "/v1/users", Scope::UsersRead),
    ("DELETE", "/v1/users/{id}", Scope::UsersWrite),
    ("DELETE", "/v1/users/{id}/sessions", Scope::UsersWrite),
    ("GET", "/v1/invitations", Scope::UsersRead),
    ("DELETE", "/v1/invitations/{id}", Scope::UsersWrite),
    ("GET", "/v1/webhooks", Scope::WebhooksRead),
    ("POST", "/v1/webhooks", Scope::WebhooksWrite),
    ("DELETE", "/v1/webhooks/{id}", Scope::WebhooksWrite),
    ("GET", "/v1/webhooks/{id}", Scope::WebhooksRead),
    ("PATCH", "/v1/webhooks/{id}", Scope::WebhooksWrite),
    ("POST", "/v1/webhooks/{id}/rotate-secret", Scope::WebhooksWrite),
    ("POST", "/v1/webhooks/{id}/test", Scope::WebhooksWrite),
    ("POST", "/v1/webhooks/{id}/recover", Scope::WebhooksWrite),
    ("GET", "/v1/webhooks/{id}/deliveries", Scope::WebhooksRead),
    ("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", Scope::WebhooksWrite),
    ("GET", "/v1/events", Scope::WebhooksRead),
    ("GET", "/v1/events/{id}", Scope::WebhooksRead),
    ("GET", "/v1/audit-log", Scope::AuditRead),
    ("GET", "/v1/audit-log/verify", Scope::AuditRead),
];

/// What the route `method path` (its template, as routed) allows a key.
pub fn access(method: &str, path: &str) -> Access {
    SCOPED
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map_or(Access::People, |(_, _, scope)| Access::Scope(*scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_not_listed_are_for_people() {
        assert_eq!(access("GET", "/v1/projects"), Access::Scope(Scope::ProjectsRead));
        assert_eq!(access("post", "/v1/projects"), Access::Scope(Scope::ProjectsWrite));
        for (method, path) in [
            ("POST", "/v1/api-keys"),
            ("GET", "/v1/api-keys"),
            ("POST", "/v1/invitations"),
            ("PATCH", "/v1/users/{id}"),
            ("POST", "/v1/users"),
            ("GET", "/v1/me"),
            ("GET", "/v1/projects/"),
        ] {
            assert_eq!(access(method, path), Access::People, "{method} {path}");
        }
    }
}
