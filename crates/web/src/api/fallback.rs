//! What answers when no route matched: 405 with `Allow` for a known path, else 404.
//!
//! actix-web can't list its routes, so the table of known paths is read from the OpenAPI
//! document, which lists every route (they are registered only through it).

use std::collections::HashSet;

use actix_web::{HttpRequest, HttpResponse, web};
use plinth_domain::Error;
use utoipa::openapi::OpenApi;

use crate::problem::ApiError;

/// Path templates (`/v1/projects/{id}`) and their methods.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// Every route's label, for the exact lookup every request makes.
    labels: HashSet<&'static str>,
}

/// One documented path template.
#[derive(Debug)]
struct Route {
    segments: Vec<Segment>,
    methods: Vec<String>,
    /// The template, as a metric and log label: leaked once per table (a few dozen short
    /// strings), so that labels cost no allocation.
    label: &'static str,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

impl RouteTable {
    /// The table of every path and method `doc` documents.
    pub fn from_openapi(doc: &OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = segments(path);
                let mut methods: Vec<String> = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter(|(_, has)| *has)
                .map(|(m, _)| m.to_owned())
                .collect();
                methods.sort();
                Route { segments, methods, label: Box::leak(path.clone().into_boxed_str()) }
            })
            .collect::<Vec<_>>();
        let labels = routes.iter().map(|r| r.label).collect();
        Self { routes, labels }
    }

    /// The documented template `template` is, as a label; `None` when it is not documented.
    /// Parameter names are not compared.
    pub fn label(&self, template: &str) -> Option<&'static str> {
        if let Some(label) = self.labels.get(template) {
            return Some(label);
        }
        let wanted = segments(template);
        self.routes.iter().find(|r| r.segments == wanted).map(|r| r.label)
    }

    /// The documented template `path` (a request's path) falls under, as a label: the one with
    /// the most literal segments if several do; `None` when none does.
    pub fn label_of_path(&self, path: &str) -> Option<&'static str> {
        // A path without parameters is its own template.
        if let Some(label) = self.labels.get(path) {
            return Some(label);
        }
        self.routes
            .iter()
            .filter(|r| r.matches(path))
            .max_by_key(|r| r.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count())
            .map(|r| r.label)
    }

    /// Whether `path` is documented but not for `method`: the request is answered 405 whatever
    /// its host.
    pub fn lacks_method(&self, path: &str, method: &str) -> bool {
        let mut known = false;
        for route in self.matching(path) {
            if route.methods.iter().any(|m| m == method) {
                return false;
            }
            known = true;
        }
        known
    }

    /// The methods `path` supports; empty for an unknown path.
    pub fn methods(&self, path: &str) -> Vec<&str> {
        let mut found: Vec<&str> = self.matching(path).flat_map(|r| r.methods.iter().map(String::as_str)).collect();
        found.sort_unstable();
        found.dedup();
        found
    }
}

impl RouteTable {
    /// The templates `path` is documented under: the one that spells it out, if there is one
    /// (`/v1/invitations/accept`), else those with parameters it fills (`/v1/invitations/{id}`),
    /// as a literal route is the one a client means.
    fn matching<'a, 'p>(&'a self, path: &'p str) -> impl Iterator<Item = &'a Route> + use<'a, 'p> {
        let literal = self.routes.iter().any(|r| r.is_literal() && r.matches(path));
        self.routes.iter().filter(move |r| r.matches(path) && (!literal || r.is_literal()))
    }
}

impl Route {
    /// Whether the template has no parameter.
    fn is_literal(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether `path` falls under this template: the same number of segments, the literal ones
    /// equal, the parameters not empty.
    fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/');
        let all_match = self.segments.iter().all(|seg| match (seg, parts.next()) {
            (Segment::Literal(l), Some(part)) => l == part,
            (Segment::Param, Some(part)) => !part.is_empty(),
            (_, None) => false,
        });
        all_match && parts.next().is_none()
    }
}

/// The segments of a path template: `{name}` is a parameter.
fn segments(template: &str) -> Vec<Segment> {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { Segment::Param } else { Segment::Literal(s.to_owned()) })
        .collect()
}

/// The default service: 405 with `Allow` for a known path, else 404 `not_found`.
pub async fn unmatched(
    req: HttpRequest,
    table: web::Data<std::sync::Arc<RouteTable>>,
) -> Result<HttpResponse, ApiError> {
    let methods = table.methods(req.path());
    Err(if methods.is_empty() {
        ApiError::Domain(Error::NotFound)
    } else {
        ApiError::MethodNotAllowed(methods.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_labelled_with_the_template_it_falls_under() {
        let table = RouteTable::from_openapi(&crate::startup::openapi_document());
        for (path, label) in [
            ("/v1/projects", Some("/v1/projects")),
            ("/v1/projects/0190-abc", Some("/v1/projects/{id}")),
            ("/v1/webhooks/x/deliveries", Some("/v1/webhooks/{id}/deliveries")),
            ("/healthz", Some("/healthz")),
            ("/v1/projects/", None),
            ("/v1/projects/a/b", None),
            ("/v1", None),
            ("/", None),
        ] {
            assert_eq!(table.label_of_path(path), label, "{path}");
        }
        assert_eq!(table.methods("/v1/projects/x"), ["DELETE", "GET", "PATCH"]);
        assert!(table.methods("/v1/nothing").is_empty());
        assert!(table.lacks_method("/v1/projects/x", "PUT"));
        assert!(table.lacks_method("/v1/signup", "GET"));
        assert!(!table.lacks_method("/v1/projects/x", "PATCH"));
        assert!(!table.lacks_method("/v1/nothing", "PUT"), "an unknown path is a 404");
        // A path spelled out by a template of its own is that route's, not a parameter's value.
        assert_eq!(table.methods("/v1/invitations/accept"), ["POST"]);
        assert_eq!(table.methods("/v1/invitations/x"), ["DELETE"]);
        assert!(table.lacks_method("/v1/invitations/accept", "GET"));
    }
}
