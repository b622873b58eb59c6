//! # tcpshm — see and fix a tcpshm deployment
//!
//! ```text
//! tcpshm ls DIR                      every session in a storage directory
//! tcpshm inspect FILE                a store, shared-memory or counters file, read-only
//! tcpshm check DIR|FILE              validate files; exit status 3 on damage
//! tcpshm reset STORE | --dir D --local L --remote R
//!                                    start one session afresh (refused while in use)
//! tcpshm rm STORE | --dir D --local L --remote R
//!                                    remove one session's files (refused while in use)
//! tcpshm gc [DIR...] [--server NAME] [--yes]
//!                                    old epochs, orphaned files, dead counters (dry run)
//! tcpshm stat [FILE] [--server NAME] [--once]
//!                                    a running server's live counters, refreshed like top
//! ```
//!
//! Every command takes `--json` (one JSON document; `stat` without `--once` prints one
//! per refresh) and the locations of the shared-memory files (`--shm-dir`,
//! `--shm-prefix`, default `/dev/shm` and `tcpshm-`) and of the counters files
//! (`--stats-dir`, `--stats-prefix`, default `/dev/shm` and `tcpshm-stats-`).
//!
//! The command holds no knowledge of the files' formats: it reads them through the
//! read-only APIs of `tcpshm-persist` (`Store::summary`, `inspect`, `check`,
//! `holder`), `tcpshm-transport-shm` (`ShmFile::inspect`), `tcpshm-stats`
//! (`StatsReader`) and the session naming rule of `tcpshm-connection`
//! (`SessionFiles`). Reading never takes a lock or writes a byte, so it is safe on a
//! live deployment; changing (`reset`, `rm`, `gc --yes`) takes the files' locks and is
//! refused while a process holds them.
//!
//! Exit status: 0 done; 1 an error (one line on stderr: `tcpshm: <path>: <reason>`);
//! 2 a usage error; 3 `check` found damage.
//!
//! Install with `cargo install --path crates/cli`.

mod check;
mod gc;
mod inspect;
mod ls;
mod remove;
mod render;
mod session;
mod stat;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tcpshm_stats::StatsDir;
use tcpshm_transport_shm::ShmDir;

/// See and fix a tcpshm deployment: sessions, files, live counters.
#[derive(Parser)]
#[command(name = "tcpshm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: Common,
}

/// Options every command takes.
#[derive(Args, Clone)]
pub(crate) struct Common {
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Directory of the shared-memory files.
    #[arg(long, global = true, value_name = "DIR", default_value = ShmDir::DEFAULT_DIR)]
    pub(crate) shm_dir: PathBuf,
    /// Prefix of the shared-memory files' names.
    #[arg(long, global = true, value_name = "PREFIX", default_value = ShmDir::DEFAULT_PREFIX)]
    pub(crate) shm_prefix: String,
    /// Directory of the servers' live counters files.
    #[arg(long, global = true, value_name = "DIR", default_value = StatsDir::DEFAULT_DIR)]
    pub(crate) stats_dir: PathBuf,
    /// Prefix of the counters files' names.
    #[arg(long, global = true, value_name = "PREFIX", default_value = StatsDir::DEFAULT_PREFIX)]
    pub(crate) stats_prefix: String,
}

impl Common {
    pub(crate) fn shm(&self) -> Result<ShmDir> {
        Ok(ShmDir::new(&self.shm_dir, &self.shm_prefix)?)
    }

    pub(crate) fn stats(&self) -> Result<StatsDir> {
        Ok(StatsDir::new(&self.stats_dir, &self.stats_prefix)?)
    }
}

/// One session, by its store file or by its directory and names.
#[derive(Args, Clone)]
pub(crate) struct SessionArg {
    /// The session's store file (`<dir>/<local>@<remote>.tcpshm`).
    #[arg(value_name = "STORE", required_unless_present_all = ["dir", "local", "remote"], conflicts_with_all = ["dir", "local", "remote"])]
    pub(crate) store: Option<PathBuf>,
    /// The storage directory (with --local and --remote).
    #[arg(long, requires_all = ["local", "remote"])]
    pub(crate) dir: Option<PathBuf>,
    /// This side's name.
    #[arg(long, requires_all = ["dir", "remote"])]
    pub(crate) local: Option<String>,
    /// The peer's name.
    #[arg(long, requires_all = ["dir", "local"])]
    pub(crate) remote: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Every session in a storage directory: names, epoch, transport, queued messages
    /// and bytes, consumed count, last activity, and which process holds it.
    Ls {
        /// A storage directory (a server's or a client's).
        dir: PathBuf,
    },
    /// One file, read-only and safe on a live file: a store (`.tcpshm`), a
    /// shared-memory file (`.shm`) or a counters file (`.stats`): header, cursors and
    /// each queued message (seq, type, length, preview).
    Inspect {
        /// The file.
        file: PathBuf,
        /// Show at most this many messages per queue.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Show every message.
        #[arg(long)]
        all: bool,
    },
    /// Validate every file of a storage directory (and its sessions' shared-memory
    /// files), or one file, as opening it would: typed findings; exit status 3 if any
    /// file is damaged.
    Check {
        /// A storage directory or a file.
        path: PathBuf,
    },
    /// Start one session afresh on this side: its store is emptied (queue and numbers
    /// dropped, epoch kept) and its shared-memory file removed. Refused while a process
    /// holds the session. The remedy a `SeqMismatch` names.
    Reset {
        #[command(flatten)]
        session: SessionArg,
    },
    /// Remove one session's files (store and shared-memory file). Refused while a
    /// process holds the session.
    Rm {
        #[command(flatten)]
        session: SessionArg,
    },
    /// Find what can go: sessions of earlier server names, empty sessions, orphaned
    /// shared-memory files, counters files of dead servers. A dry run unless --yes,
    /// saying what and why; what a live process holds is never removed.
    Gc {
        /// Storage directories to judge (without any, only counters files are).
        dirs: Vec<PathBuf>,
        /// The current server name of these directories (otherwise the name of the live
        /// server serving them, if any): sessions of other names are old epochs.
        #[arg(long)]
        server: Option<String>,
        /// Remove what the dry run lists.
        #[arg(long, alias = "apply")]
        yes: bool,
    },
    /// A running server's live counters per session, refreshed in place like top.
    Stat {
        /// A counters file (default: every live server's in --stats-dir).
        file: Option<PathBuf>,
        /// Only this server.
        #[arg(long)]
        server: Option<String>,
        /// Print once and exit (for scripts and tests).
        #[arg(long)]
        once: bool,
        /// Refresh every this many milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let c = &cli.common;
    let result = match cli.command {
        Command::Ls { dir } => ls::run(c, &dir),
        Command::Inspect { file, limit, all } => inspect::run(c, &file, if all { usize::MAX } else { limit }),
        Command::Check { path } => check::run(c, &path),
        Command::Reset { session } => remove::run(c, &session, remove::What::Reset),
        Command::Rm { session } => remove::run(c, &session, remove::What::Remove),
        Command::Gc { dirs, server, yes } => gc::run(c, &dirs, server.as_deref(), yes),
        Command::Stat { file, server, once, interval } => {
            stat::run(c, file.as_deref(), server.as_deref(), once, interval)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the errors of the libraries name the path; context adds what
            // was being done.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("tcpshm: {}", dedup(&chain).join(": "));
            ExitCode::from(1)
        }
    }
}

/// The error chain without a cause whose text its context already contains.
fn dedup(chain: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in chain {
        if !out.iter().any(|o| o.contains(c.as_str())) {
            out.push(c.replace('\n', " "));
        }
    }
    out
}
