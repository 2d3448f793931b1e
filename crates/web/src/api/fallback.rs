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

    /// Whether `template` (`/v1/projects/{id}`, as actix's `match_pattern` gives it) is a
    /// documented path template. Parameter names are not compared.
    pub fn knows(&self, template: &str) -> bool {
        self.label(template).is_some()
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

    /// The methods `path` supports; empty for an unknown path.
    pub fn methods(&self, path: &str) -> Vec<&str> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut found: Vec<&str> = self
            .routes
            .iter()
            .filter(|r| {
                r.segments.len() == parts.len()
                    && r.segments.iter().zip(&parts).all(|(seg, part)| match seg {
                        Segment::Literal(l) => l == part,
                        Segment::Param => !part.is_empty(),
                    })
            })
            .flat_map(|r| r.methods.iter().map(String::as_str))
            .collect();
        found.sort_unstable();
        found.dedup();
        found
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
