//! `credpool simulate` (and `credpool demo`, a short one): a crawl against
//! simulated hostile sites on loopback, the card's SLOs measured from what
//! the workers saw, and with `--compare` the same sites and seed driven by
//! a naive pool and by each built-in strategy.

use super::{EXIT_ERROR, Failed, usage};
use crate::config::ConfigFile;
use crate::simulate::report::{self, Report};
use crate::simulate::run::{self, PolicyChoice, Progress, SimOptions, Stop};
use crate::simulate::{capture_log, scenario};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

/// The strategies `--compare` runs besides the default and the baseline.
const STRATEGIES: [&str; 4] = ["round-robin", "random", "least-recently-used", "sticky"];
/// The fixed rates per account per minute `--compare` runs beside the
/// adaptive pace: from too slow to too fast for the simulated sites, so
/// the best fixed rate in hindsight is among them.
const FIXED_RATES: [u32; 6] = [60, 240, 300, 360, 480, 900];

pub struct Args {
    pub accounts: usize,
    pub workers: usize,
    pub duration: Option<String>,
    pub requests: Option<u64>,
    pub seed: u64,
    pub strategy: Option<String>,
    pub compare: bool,
    pub json: bool,
}

pub fn run(args: Args, config: ConfigFile, component: Option<PathBuf>) -> Result<(), Failed> {
    if args.accounts < 3 {
        return Err(usage(
            "--accounts must be at least 3 (one per simulated site)",
        ));
    }
    if args.workers == 0 {
        return Err(usage("--workers must be at least 1"));
    }
    let stop = match (&args.duration, args.requests) {
        (Some(_), Some(_)) => return Err(usage("give --duration or --requests, not both")),
        (_, Some(0)) => return Err(usage("--requests must be at least 1")),
        (_, Some(n)) => Stop::Requests(n),
        (Some(d), None) => Stop::After(
            crate::lifecycle::sites::parse_duration(d)
                .map_err(|e| usage(format!("--duration {d:?}: {e}")))?,
        ),
        (None, None) => Stop::After(Duration::from_secs(60)),
    };
    if let Some(s) = &args.strategy
        && !STRATEGIES.contains(&s.as_str())
        && s != "health-weighted"
    {
        return Err(usage(format!(
            "unknown --strategy {s:?}: expected health-weighted, round-robin, random, least-recently-used or sticky"
        )));
    }
    let options = SimOptions {
        sites: scenario::sites(
            args.accounts,
            args.seed,
            match stop {
                Stop::After(d) => d / 2,
                Stop::Requests(_) => Duration::from_secs(30),
            },
        ),
        workers: args.workers,
        stop,
        seed: args.seed,
        policy: match &args.strategy {
            Some(s) => PolicyChoice::Strategy(s.clone()),
            None => PolicyChoice::Default,
        },
        config: Some(config),
        person_delay: (Duration::from_secs(2), Duration::from_secs(6)),
        rule: report::DetectionRule::default(),
        component,
    };
    let mut policies = vec![options.policy.clone()];
    if args.compare {
        policies.push(PolicyChoice::Naive);
        for s in STRATEGIES {
            if args.strategy.as_deref() != Some(s) {
                policies.push(PolicyChoice::Strategy(s.into()));
            }
        }
        policies.extend(FIXED_RATES.map(PolicyChoice::Fixed));
    }
    let mut reports = Vec::new();
    for policy in policies {
        let mut options = options.clone();
        options.policy = policy;
        let report = one(&options, args.json)?;
        if !args.json {
            println!("{}", report.policy);
            print!("{}", report::render(&report));
            println!();
        }
        reports.push(report);
    }
    if args.json {
        let value = if reports.len() == 1 {
            serde_json::to_value(&reports[0])
        } else {
            serde_json::to_value(&reports)
        }
        .map_err(|e| Failed(EXIT_ERROR, e.to_string()))?;
        println!("{value}");
    } else if reports.len() > 1 {
        println!(
            "same sites, same seed ({}), {} workers:",
            args.seed, args.workers
        );
        print!("{}", report::render_comparison(&reports));
        println!();
        print!("{}", report::render_pace_comparison(&reports));
    }
    if let Some(r) = reports.iter().find(|r| !r.leaks.found_in.is_empty()) {
        return Err(Failed(
            EXIT_ERROR,
            format!(
                "a secret reached a file in plain text: {}",
                r.leaks.found_in.join(", ")
            ),
        ));
    }
    Ok(())
}

/// One run in its own temporary directory, its log captured there.
fn one(options: &SimOptions, quiet: bool) -> Result<Report, Failed> {
    let work = tempfile::Builder::new()
        .prefix("credpool-simulate-")
        .tempdir()
        .map_err(|e| {
            Failed(
                EXIT_ERROR,
                format!("cannot create a temporary directory: {e}"),
            )
        })?;
    let log = work.path().join("run.log");
    capture_log(Some(&log))
        .map_err(|e| Failed(EXIT_ERROR, format!("cannot write the log: {e}")))?;
    let live = !quiet && std::io::stderr().is_terminal();
    if !quiet {
        eprintln!(
            "simulating {}: {} accounts on {} sites, {} workers",
            options.policy.label(),
            options.sites.iter().map(|s| s.accounts).sum::<usize>(),
            options.sites.len(),
            options.workers
        );
    }
    let show = |p: &Progress| {
        if live {
            eprint!("\r\x1b[2K{}", progress_line(p));
            let _ = std::io::stderr().flush();
        }
    };
    let result = run::run(options, work.path(), Some(&log), &show);
    capture_log(None).map_err(|e| Failed(EXIT_ERROR, format!("cannot close the log: {e}")))?;
    if live {
        eprint!("\r\x1b[2K");
    }
    result.map_err(|e| Failed(EXIT_ERROR, format!("simulation failed: {e:#}")))
}

/// `12s  3,456 requests  91.2% ok  active 180 cooling 5 …`
pub fn progress_line(p: &Progress) -> String {
    let ok = if p.requests > 0 {
        format!("{:.1}% ok", p.ok as f64 * 100.0 / p.requests as f64)
    } else {
        "-".into()
    };
    let states: Vec<String> = p
        .by_status
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    format!(
        "{:>4}s  {} requests  {ok}  {}",
        p.elapsed.as_secs(),
        p.requests,
        states.join(" ")
    )
}
