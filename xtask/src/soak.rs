//! `cargo xtask soak [SECONDS]`: the soak test at length (default 300 s), in release mode, with
//! the memory check on. CI runs the same test for 30 s without it.

use crate::util::{cargo, run};

/// Runs the soak test for `args[0]` seconds (default 300).
pub fn soak(args: &[String]) -> Result<(), String> {
    let seconds = args.first().map_or("300", String::as_str);
    if seconds.parse::<u32>().is_err() {
        return Err(format!("soak: {seconds:?} is not a number of seconds"));
    }
    run(
        "soak",
        cargo()
            .args(["test", "--release", "-p", "plinth-web", "--test", "soak", "--", "--nocapture"])
            .env("PLINTH_SOAK_SECONDS", seconds)
            .env("PLINTH_SOAK_CHECK_RSS", "1"),
    )
}
