//! Boiling a callgrind_annotate listing down to the few costs worth reading.

/// One `Ir (pct%)  file:function [object]` line.
fn parse_line(line: &str) -> Option<(u64, String)> {
    let line = line.trim_start();
    let (count, rest) = line.split_once(' ')?;
    let ir: u64 = count.replace(',', "").parse().ok()?;
    let rest = rest.trim_start().strip_prefix('(')?;
    let (_, rest) = rest.split_once(')')?;
    let location = rest.trim();
    // `file:function [object]`: paths hold no ':', Rust paths hold "::".
    let function = match location.find(':') {
        Some(i) if !location[i..].starts_with("::") => &location[i + 1..],
        _ => location,
    };
    let function = function.rsplit_once(" [").map_or(function, |(f, _)| f);
    Some((ir, function.trim().to_owned()))
}

/// Thread and process entry points: once callgrind's counters are zeroed mid-run, the listing
/// charges them costs that are not theirs.
fn entry_point(function: &str) -> bool {
    ["(below main)", "main", "clone", "start_thread"].contains(&function)
        || function.starts_with("0x")
        || function.starts_with("__libc_start_main")
        || function.starts_with("std::rt::lang_start")
}

/// The listing's costs per function: inlined copies (listed once per source file) are summed
/// for self costs, and the largest is kept for inclusive ones (which overlap).
fn by_function(listing: &str, inclusive: bool) -> (u64, Vec<(String, u64)>) {
    let mut total = 0;
    let mut costs: Vec<(String, u64)> = Vec::new();
    for line in listing.lines() {
        if line.contains("PROGRAM TOTALS") {
            total = parse_line(line.replace("PROGRAM TOTALS", "x:PROGRAM TOTALS").as_str()).map_or(0, |(ir, _)| ir);
            continue;
        }
        let Some((ir, function)) = parse_line(line) else { continue };
        if entry_point(&function) {
            continue;
        }
        match costs.iter_mut().find(|(f, _)| *f == function) {
            Some((_, c)) if inclusive => *c = (*c).max(ir),
            Some((_, c)) => *c += ir,
            None => costs.push((function, ir)),
        }
    }
    costs.sort_by_key(|c| std::cmp::Reverse(c.1));
    (total, costs)
}

fn percent(part: u64, total: u64) -> f64 {
    part as f64 * 100.0 / total.max(1) as f64
}

/// The summary: instructions per request, the top self costs, and plinth's own functions by
/// inclusive cost. Entries above 90% (runtime entry points, which carry the whole run once
/// callgrind's counters are zeroed mid-run) are left out of the self costs.
pub fn summarize(exclusive: &str, inclusive: &str, requests: u64, top: usize) -> String {
    let (total, selfs) = by_function(exclusive, false);
    let (_, incl) = by_function(inclusive, true);
    let mut out = format!(
        "{requests} requests profiled: {} instructions in all, {} per request (every thread, the worker's idle polling included)\n\n\
         self cost, by function (inlined copies summed):\n",
        total,
        total / requests.max(1)
    );
    for (f, ir) in selfs.iter().filter(|(_, ir)| percent(*ir, total) < 90.0).take(top) {
        out.push_str(&format!("  {:5.1}%  {f}\n", percent(*ir, total)));
    }
    out.push_str("\ninclusive cost of plinth's own functions:\n");
    for (f, ir) in incl.iter().filter(|(f, _)| f.starts_with("plinth")).take(top) {
        out.push_str(&format!("  {:5.1}%  {f}\n", percent(*ir, total)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_inlined_copies_per_function() {
        let listing = "192,000 (100.0%)  PROGRAM TOTALS\n\
                       12,000 ( 6.25%)  /x/sha2/soft.rs:sha2::sha256::soft::compress [/bin/plinth]\n\
                       7,000 ( 3.65%)  /rustc/core/intrinsics/mod.rs:sha2::sha256::soft::compress\n\
                       5,000 ( 2.60%)  ./malloc/malloc.c:_int_free [/lib/libc.so.6]\n";
        let (total, costs) = by_function(listing, false);
        assert_eq!(total, 192_000);
        assert_eq!(costs[0], ("sha2::sha256::soft::compress".to_owned(), 19_000));
        assert_eq!(costs[1], ("_int_free".to_owned(), 5_000));
    }
}
