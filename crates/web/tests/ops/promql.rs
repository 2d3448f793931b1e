//! What the operator files ask of plinth's metrics: the expressions of
//! `deploy/prometheus/alerts.yml` and `deploy/grafana/plinth.json`, and the metric names each
//! one reads, by a small PromQL tokenizer.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

/// Series that Prometheus makes itself, not plinth.
pub const PROMETHEUS_MADE: &[&str] = &["up"];

/// Words that are never metric names: binary operators, modifiers and literals.
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];

/// Modifiers followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The workspace root (this crate is two levels below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An alerting rule of `alerts.yml`: its name and expression.
#[derive(Debug, Clone)]
pub struct Rule {
    pub alert: String,
    pub expr: String,
    /// Its `runbook` annotation.
    pub runbook: Option<String>,
}

/// The rules of `alerts.yml`, read line by line: an `expr:` is one line, or a block scalar
/// (`|`) whose lines are indented deeper than the key. Every `- alert:` must have one.
pub fn alert_rules() -> Vec<Rule> {
    let path = root().join("deploy/prometheus/alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_rules(&text)
}

fn parse_rules(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = Vec::new();
    let mut alert: Option<String> = None;
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            assert!(alert.is_none(), "alert {alert:?} has no expr");
            alert = Some(name.trim().to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("expr:") {
            let name = alert.take().unwrap_or_else(|| panic!("an expr outside an alert, line {}", i + 1));
            let rest = rest.trim();
            let expr = if rest.starts_with('|') || rest.starts_with('>') {
                let indent = line.len() - trimmed.len();
                let block: Vec<&str> = lines[i + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                    .map(|l| l.trim())
                    .collect();
                block.join("\n").trim().to_owned()
            } else {
                rest.trim_matches(['\'', '"']).to_owned()
            };
            assert!(!expr.is_empty(), "alert {name} has an empty expr");
            rules.push(Rule { alert: name, expr, runbook: None });
        } else if let Some(runbook) = trimmed.strip_prefix("runbook:") {
            assert!(alert.is_none(), "write the runbook of {alert:?} after its expr");
            let rule = rules.last_mut().unwrap_or_else(|| panic!("a runbook outside a rule, line {}", i + 1));
            rule.runbook = Some(runbook.trim().trim_matches(['\'', '"']).to_owned());
        }
    }
    assert!(alert.is_none(), "alert {alert:?} has no expr");
    rules
}

/// A panel target of the dashboard: the panel's title and the target's expression.
#[derive(Debug, Clone)]
pub struct Target {
    pub panel: String,
    pub expr: String,
}

/// Every target of every panel of `plinth.json` (rows' nested panels too).
pub fn dashboard_targets() -> Vec<Target> {
    let path = root().join("deploy/grafana/plinth.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut targets = Vec::new();
    collect_targets(&dashboard["panels"], &mut targets);
    targets
}

fn collect_targets(panels: &Value, out: &mut Vec<Target>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("a target of {title:?} has no expr"));
            out.push(Target { panel: title.to_owned(), expr: expr.to_owned() });
        }
        collect_targets(&panel["panels"], out);
    }
}

/// Replaces the dashboard's variables with what a query of every job and instance over five
/// minutes would use, so Prometheus can run the expression as Grafana would.
pub fn expand_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*")
}

/// The metric names `expr` reads: every identifier that is not a function or aggregation (an
/// identifier followed by `(`), a keyword, a label name (inside `{…}` or a `by (…)`-style
/// list), a string, a number or a duration (inside `[…]`, or after `offset`).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_until(&chars, i, '}'),
            '[' => i = skip_until(&chars, i, ']'),
            '#' => i = chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |n| i + n),
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                // A number (`0.99`, `1e3`, `0x1f`) or a duration (`5m`): never a name.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                    i += 1;
                }
            }
            '$' => {
                // A dashboard variable outside a string.
                i += 1;
                while i < chars.len() && is_word(chars[i]) {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && is_word(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().position(|c| !c.is_whitespace()).map(|n| i + n);
                let followed_by = |wanted: char| next.is_some_and(|n| chars[n] == wanted);
                let lower = word.to_ascii_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if let Some(n) = next.filter(|_| followed_by('(')) {
                        i = skip_until(&chars, n, ')');
                    }
                } else if KEYWORDS.contains(&lower.as_str()) || followed_by('(') || next_word_groups(&chars, next) {
                    // A keyword, a function or aggregation called here, or an aggregation
                    // whose `by`/`without` comes before its argument.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Whether the word at `at` is `by` or `without`.
fn next_word_groups(chars: &[char], at: Option<usize>) -> bool {
    let Some(at) = at else { return false };
    let end = chars[at..].iter().position(|&c| !is_word(c)).map_or(chars.len(), |n| at + n);
    let word: String = chars[at..end].iter().collect::<String>().to_ascii_lowercase();
    word == "by" || word == "without"
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index just past the string literal that opens at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    panic!("an unterminated string in {:?}", chars.iter().collect::<String>())
}

/// The index just past the `close` that ends the group opening at `start`, skipping strings.
fn skip_until(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i),
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    panic!("an unclosed {:?} in {:?}", chars[start], chars.iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn functions_aggregations_label_lists_strings_and_durations_are_not_metric_names() {
        let expr = r#"histogram_quantile(0.99, sum by (job, route, le) (rate(http_request_duration_seconds_bucket{route!="unmatched", route!~".*/export"}[5m])))
            / on (job) group_left sum without (instance) (rate(http_requests_total{status=~"5.."}[$__rate_interval] offset 1h))
            > bool 0.5 unless max_over_time(plinth_shutting_down[30m:1m]) == 1e3 or up == Inf"#;
        assert_eq!(
            names(expr),
            ["http_request_duration_seconds_bucket", "http_requests_total", "plinth_shutting_down", "up"]
        );
    }

    #[test]
    fn a_name_with_no_selector_and_names_inside_label_values_are_read_right() {
        assert_eq!(names("db_pool_waiting > 0 or db_pool_available == 0"), ["db_pool_available", "db_pool_waiting"]);
        // A label value that looks like a name, or holds a brace or a quote, is a string.
        assert_eq!(names(r#"jobs_total{kind="deliver", outcome=~"error|ok", x="}\"", y='a{b'}"#), ["jobs_total"]);
        // `group_left` without a list, and a name right after it.
        assert_eq!(names("a / on (job) group_left b"), ["a", "b"]);
        // Grafana variables outside strings are not names either.
        assert_eq!(names("sum(rate(cache_fetches_total[$__interval])) * $factor"), ["cache_fetches_total"]);
    }

    #[test]
    fn a_misspelt_metric_name_is_extracted_as_written() {
        // The check against a scrape compares these names, so a typo must come out verbatim.
        let expr = r#"sum by (policy) (rate(rate_limit_rejection_total{policy="ip"}[5m]))"#;
        assert_eq!(names(expr), ["rate_limit_rejection_total"]);
    }

    #[test]
    fn rules_are_read_from_one_line_and_block_exprs_and_a_missing_expr_is_refused() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: One\n        expr: up == 0\n        for: 1m\n      - alert: Two\n        expr: |\n          sum(a)\n\n            / sum(b)\n        labels:\n          severity: warning\n";
        let rules = parse_rules(text);
        assert_eq!(rules.len(), 2);
        assert_eq!((rules[0].alert.as_str(), rules[0].expr.as_str()), ("One", "up == 0"));
        assert_eq!((rules[1].alert.as_str(), rules[1].expr.as_str()), ("Two", "sum(a)\n\n/ sum(b)"));
        let missing =
            std::panic::catch_unwind(|| parse_rules("      - alert: One\n      - alert: Two\n        expr: a\n"));
        assert!(missing.is_err());
    }
}
