//! The iptables backend: one `iptables-restore --noflush` (or `ip6tables-restore`) exec per
//! change, fed a generated batch, and `iptables-save -t <table>` parsed to read state.
//!
//! Why a restore batch: Go's portmap forks `iptables --wait` once per rule operation (about 15
//! per ADD), each taking the xtables lock and, with iptables-nft, re-reading the ruleset. One
//! restore applies every line of a table in one transaction (all or nothing) under one lock.
//!
//! A restore input declares chains with `:NAME - [0:0]`, which **creates or flushes** the chain
//! under `--noflush`. To create a chain only when it is missing, read the table first and use
//! [`RestoreBatch::ensure_chain`], which writes `-N NAME` only for a chain the saved state lacks.
//!
//! ```no_run
//! # fn main() -> Result<(), cni_net::iptables::IptablesError> {
//! use cni_net::Family;
//! use cni_net::iptables::{IptablesRunner, RestoreBatch};
//!
//! let ipt = IptablesRunner::host();
//! let state = ipt.save(Family::V4, "nat")?;
//! let mut batch = RestoreBatch::new("nat");
//! batch.ensure_chain(&state, "CNI-HOSTPORT-DNAT");
//! batch.declare_chain("CNI-DN-1234"); // created, or flushed when it exists
//! batch.append("CNI-DN-1234", ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.222.0.5:80"]);
//! batch.append_if_missing(&state, "CNI-HOSTPORT-DNAT",
//!     ["-p", "tcp", "-m", "comment", "--comment", "dnat name: \"net\" id: \"cid\"", "-j", "CNI-DN-1234"]);
//! ipt.restore(Family::V4, &batch)?;
//!
//! // DEL: every rule that jumps to the container's chain, then the chain.
//! let state = ipt.save(Family::V4, "nat")?;
//! let mut batch = RestoreBatch::new("nat");
//! for rule in state.rules_jumping_to("CNI-DN-1234") {
//!     batch.delete_saved(rule);
//! }
//! batch.flush_chain("CNI-DN-1234").delete_chain("CNI-DN-1234");
//! ipt.restore(Family::V4, &batch)?;
//! # Ok(()) }
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::addr::Family;

/// Directories searched for the iptables binaries and `nsenter`, in order. Absolute paths keep
/// a plugin's `PATH` (set by the runtime) from choosing the binary.
pub const BIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// How long `iptables-restore` waits for the xtables lock, in seconds (`--wait`), rather than
/// failing at once when kube-proxy or another plugin holds it, or waiting forever.
pub const LOCK_WAIT_SECS: u32 = 30;

/// What can go wrong running iptables.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IptablesError {
    /// The binary is in none of [`BIN_DIRS`].
    #[error("{0} not found in /usr/sbin, /sbin, /usr/bin or /bin")]
    NotFound(String),
    /// Spawning or talking to the process failed.
    #[error("cannot run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The command exited with an error. `input` is the restore batch it was given.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: PathBuf,
        status: ExitStatus,
        stderr: String,
        input: String,
    },
    /// The lock of [`IptablesRunner::update`] could not be taken.
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of `iptables-save` output could not be parsed.
    #[error("cannot parse iptables-save output: {0}")]
    Parse(String),
    /// A chain name or rule argument cannot be written into a restore batch.
    #[error("invalid iptables argument: {0}")]
    Invalid(String),
    /// Reading or changing the table in-process (iptables-nft's nf_tables table) failed.
    #[error("nf_tables")]
    Nft(#[source] crate::Error),
}

/// Runs the iptables tools, on the host or inside a network namespace (through
/// `nsenter --net=PATH`, since a multi-threaded process cannot `setns` before spawning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IptablesRunner {
    /// The namespace to run in (a `/var/run/netns/NAME` or `/proc/PID/ns/net` path).
    pub netns: Option<PathBuf>,
}

impl IptablesRunner {
    /// Runs in the caller's own network namespace.
    pub fn host() -> Self {
        IptablesRunner { netns: None }
    }

    /// Runs inside the namespace at `path`.
    pub fn in_netns(path: impl Into<PathBuf>) -> Self {
        IptablesRunner {
            netns: Some(path.into()),
        }
    }

    /// True when `iptables-restore` and `iptables-save` (or the ip6 ones) exist.
    pub fn available(&self, family: Family) -> bool {
        let (restore, save) = binaries(family);
        find_binary(restore).is_ok() && find_binary(save).is_ok()
    }

    /// Applies `batch` with one `iptables-restore --noflush --wait` (or `ip6tables-restore`).
    /// The whole batch is one transaction: on failure nothing of it is applied and the error
    /// carries the tool's message (which names the failing line) and the input.
    pub fn restore(&self, family: Family, batch: &RestoreBatch) -> Result<(), IptablesError> {
        if batch.is_empty() {
            return Ok(());
        }
        let input = batch.render()?;
        let wait = LOCK_WAIT_SECS.to_string();
        self.run(binaries(family).0, &["--noflush", "--wait", &wait], Some(&input))?;
        Ok(())
    }

    /// Reads `table` with `iptables-save -t TABLE` (or `ip6tables-save`). A table that is not
    /// loaded yet reads as empty.
    pub fn save(&self, family: Family, table: &str) -> Result<SavedTable, IptablesError> {
        check_word(table)?;
        let out = self.run(binaries(family).1, &["-t", table], None)?;
        let mut tables = parse_save(&out)?;
        Ok(match tables.iter().position(|t| t.name == table) {
            Some(i) => tables.swap_remove(i),
            None => SavedTable {
                name: table.to_string(),
                ..SavedTable::default()
            },
        })
    }

    /// Reads `table`, lets `build` turn it into a batch (`None`: nothing to change) and
    /// applies it, as one read-modify-write.
    ///
    /// A batch is planned from a reading (`-N` only for chains the reading lacks, `-D` only for
    /// rules it has), so two writers that read before either wrote collide: the second fails
    /// with "Chain already exists" or a missing rule. Our own plugins are serialized by an
    /// exclusive lock on [`UPDATE_LOCK`] held from the reading to the end of the restore; a
    /// writer that does not take it (Go's plugins, an operator) is met by reading again and
    /// rebuilding, up to [`UPDATE_ATTEMPTS`] times. The lock is only ours; the kernel's own
    /// xtables lock is still taken by `iptables-restore --wait`.
    pub fn update<E>(
        &self,
        family: Family,
        table: &str,
        mut build: impl FnMut(&SavedTable) -> Result<Option<RestoreBatch>, E>,
    ) -> Result<(), UpdateError<E>> {
        let _lock = update_lock().map_err(UpdateError::Iptables)?;
        let mut attempt = 1;
        loop {
            let saved = self.save(family, table).map_err(UpdateError::Iptables)?;
            let Some(batch) = build(&saved).map_err(UpdateError::Build)? else {
                return Ok(());
            };
            match self.restore(family, &batch) {
                Err(e) if attempt < UPDATE_ATTEMPTS && e.is_concurrent_change() => attempt += 1,
                other => return other.map_err(UpdateError::Iptables),
            }
        }
    }

    /// Whether [`IptablesRunner::update_with`] writes `table` of `family` in-process (given a
    /// socket): the runner is in the caller's namespace, the table is `nat` and the host's
    /// iptables tools are iptables-nft.
    pub fn writes_in_process(&self, family: Family, table: &str) -> bool {
        self.netns.is_none()
            && table == "nat"
            && self.available(family)
            && crate::iptables_nft::is_xtables_nft(family)
    }

    /// [`IptablesRunner::update`], done in-process when `nft` is given, the runner is in the
    /// caller's namespace and the host's iptables is iptables-nft (see
    /// [`crate::iptables_nft`]): only the part of the table `scope` names is read (the
    /// whole table when `build` asks beyond it), and the batch goes in as one nf_tables
    /// transaction on `nft`. A batch outside what is written in-process goes to
    /// `iptables-restore` as before.
    pub fn update_with<E>(
        &self,
        nft: Option<&mut crate::nft::NetfilterSocket>,
        family: Family,
        table: &str,
        scope: &crate::iptables_nft::Scope,
        mut build: impl FnMut(&SavedTable) -> Result<Option<RestoreBatch>, E>,
    ) -> Result<(), UpdateError<E>> {
        use crate::iptables_nft::{self as xt, PlanError};
        let in_process = self.writes_in_process(family, table);
        let Some(nft) = nft.filter(|_| in_process) else {
            return self.update(family, table, build);
        };
        let lock = update_lock().map_err(UpdateError::Iptables)?;
        let nft_err = |e| UpdateError::Iptables(IptablesError::Nft(e));
        let mut full = scope.all;
        let mut attempt = 1;
        loop {
            let whole = xt::Scope::all();
            let saved = xt::read(nft, family, table, if full { &whole } else { scope }).map_err(nft_err)?;
            let built = build(&saved).map_err(UpdateError::Build)?;
            if saved.missed() {
                // Planned from a reading that lacked what `build` asked about.
                full = true;
                continue;
            }
            let Some(batch) = built else {
                return Ok(());
            };
            let plan = match xt::plan(family, &saved, &batch) {
                Ok(plan) => plan,
                Err(PlanError::Unsupported(_) | PlanError::Invalid(_)) => {
                    drop(lock);
                    return self.update(family, table, build);
                }
                Err(PlanError::NotRead(_) | PlanError::NoSuchRule(..)) if !full => {
                    full = true;
                    continue;
                }
                Err(e) => {
                    return Err(UpdateError::Iptables(IptablesError::Invalid(e.to_string())));
                }
            };
            match nft.apply(&plan) {
                Ok(()) => return Ok(()),
                Err(e) if attempt < UPDATE_ATTEMPTS && concurrent_change(&e) => {
                    attempt += 1;
                    full = true;
                }
                Err(e) => return Err(nft_err(e)),
            }
        }
    }

    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, IptablesError> {
        let binary = find_binary(program)?;
        let mut cmd = match &self.netns {
            None => Command::new(&binary),
            Some(netns) => {
                let mut c = Command::new(find_binary("nsenter")?);
                c.arg(format!("--net={}", netns.display())).arg("--").arg(&binary);
                c
            }
        };
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_err = |source| IptablesError::Spawn {
            program: binary.clone(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).map_err(spawn_err)?;
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() {
            return Err(IptablesError::Failed {
                program: binary,
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                input: stdin.unwrap_or_default().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Whether an nf_tables batch failed because another writer changed the table after our
/// reading: a chain we create exists, a rule or chain we delete is gone, a chain we delete
/// gained a rule or a jump.
fn concurrent_change(e: &crate::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.errno(),
        Some(Errno::EEXIST | Errno::ENOENT | Errno::EBUSY | Errno::ENOTEMPTY | Errno::ERESTART)
    )
}

/// The lock file that serializes [`IptablesRunner::update`]s of rcni's plugins.
pub const UPDATE_LOCK: &str = "/run/lock/rcni-iptables.lock";

/// How often [`IptablesRunner::update`] reads and tries again after a concurrent writer.
pub const UPDATE_ATTEMPTS: u32 = 5;

fn update_lock() -> Result<std::fs::File, IptablesError> {
    let path = Path::new(UPDATE_LOCK);
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
    };
    let file = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // /run/lock is missing in some minimal containers.
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            open()
        }
        other => other,
    }
    .map_err(|source| IptablesError::Lock {
        path: path.to_path_buf(),
        source,
    })?;
    file.lock().map_err(|source| IptablesError::Lock {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(file)
}

/// Why [`IptablesRunner::update`] failed: reading or writing the table, or the caller's own
/// planning.
#[derive(Debug)]
pub enum UpdateError<E> {
    /// `iptables-save`, `iptables-restore` or the lock failed.
    Iptables(IptablesError),
    /// `build` failed.
    Build(E),
}

impl IptablesError {
    /// True when a restore failed because another writer changed the table between our
    /// reading and our batch: a chain our batch creates now exists, or a rule or chain it
    /// deletes or refers to is gone.
    pub fn is_concurrent_change(&self) -> bool {
        let IptablesError::Failed { stderr, .. } = self else {
            return false;
        };
        [
            "already exists",
            "No chain/target/match by that name",
            "does a matching rule exist",
            "Chain is not empty",
        ]
        .iter()
        .any(|m| stderr.contains(m))
    }

    /// True when the error says the table (or the family's tools) cannot exist on this host,
    /// so that it cannot hold any rule: the tools are not installed, or the kernel has no such
    /// table.
    pub fn is_absent(&self) -> bool {
        match self {
            IptablesError::NotFound(_) => true,
            IptablesError::Failed { stderr, .. } => {
                stderr.contains("Table does not exist") || stderr.contains("can't initialize")
            }
            _ => false,
        }
    }
}

fn binaries(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::V4 => ("iptables-restore", "iptables-save"),
        Family::V6 => ("ip6tables-restore", "ip6tables-save"),
    }
}
/// Whether the nat table of `family` may hold a chain whose name `wanted` accepts, answered
/// without running iptables: with iptables-nft the chains show as chains of the nf_tables
/// table `ip nat` / `ip6 nat` (listed on `nft`, in-process); with legacy iptables any loaded
/// nat table may hold it. On doubt (a listing error) the answer is yes.
///
/// `nft` is the caller's socket on purpose: a plugin that changed nf_tables keeps one socket
/// for the whole exec, since releasing another one waits for the kernel's deferred cleanup.
pub fn nat_may_hold(
    nft: &mut crate::nft::NetfilterSocket,
    family: Family,
    wanted: impl Fn(&str) -> bool,
) -> bool {
    let (legacy_names, nft_family) = match family {
        Family::V4 => ("/proc/net/ip_tables_names", crate::nft::Family::Ip),
        Family::V6 => ("/proc/net/ip6_tables_names", crate::nft::Family::Ip6),
    };
    if std::fs::read_to_string(legacy_names).is_ok_and(|t| t.lines().any(|l| l == "nat")) {
        return true;
    }
    match nft.chains(nft_family, "nat") {
        Ok(chains) => chains.iter().any(|c| wanted(&c.name)),
        Err(e) => !e.is_not_found(),
    }
}

/// The absolute path of `program` in the first of [`BIN_DIRS`] that has it.
pub fn find_binary(program: &str) -> Result<PathBuf, IptablesError> {
    BIN_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| IptablesError::NotFound(program.to_string()))
}

/// A table as `iptables-save` printed it, or as it was read in-process from nf_tables
/// (iptables-nft's tables, see [`crate::iptables_nft`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedTable {
    pub name: String,
    pub chains: Vec<SavedChain>,
    /// Set when the table was read in-process: the family its rules are compared in (rules
    /// are compared by their expressions, not their text).
    pub(crate) nft_family: Option<Family>,
    /// Set when only part of the table was read: what is known (see [`SavedTable::missed`]).
    pub(crate) partial: Option<crate::iptables_nft::Known>,
}

/// A chain and its rules, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedChain {
    pub name: String,
    /// `ACCEPT`/`DROP` for a built-in chain, None (`-`) for a user chain.
    pub policy: Option<String>,
    pub rules: Vec<SavedRule>,
    /// The kernel's use count, when read in-process: the chain's rules plus the rules
    /// that jump or go to it (see [`SavedTable::references`]).
    pub use_count: Option<u32>,
}

/// One `-A CHAIN ...` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedRule {
    /// The nf_tables handle, when read in-process: what deleting the rule refers to.
    pub handle: Option<u64>,
    /// The decoded expressions, when read in-process (`None` there: a rule of another
    /// writer this model cannot read, never equal to one of ours).
    pub exprs: Option<Vec<crate::nft::Expr>>,
    pub chain: String,
    /// The rule text after `-A CHAIN `, as saved (quoted as the tool quotes it).
    pub spec: String,
    /// The rule split into arguments, quotes removed.
    pub args: Vec<String>,
    /// The `-m comment --comment` text.
    pub comment: Option<String>,
    /// The `-j`/`-g` target.
    pub target: Option<String>,
}

impl SavedTable {
    /// The chain and its rules.
    pub fn chain(&self, name: &str) -> Option<&SavedChain> {
        if let Some(known) = &self.partial {
            known.need_rules(name);
        }
        self.find(name)
    }

    fn find(&self, name: &str) -> Option<&SavedChain> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn has_chain(&self, name: &str) -> bool {
        if let Some(known) = &self.partial {
            known.need_chain(name);
        }
        self.find(name).is_some()
    }

    /// True when a caller asked about a chain the partial reading did not cover; the
    /// reading is then repeated in full before anything planned from it is applied.
    pub fn missed(&self) -> bool {
        self.partial.as_ref().is_some_and(|k| k.missed())
    }

    /// Every rule of every chain.
    pub fn rules(&self) -> impl Iterator<Item = &SavedRule> {
        if let Some(known) = &self.partial {
            known.need_all();
        }
        self.chains.iter().flat_map(|c| c.rules.iter())
    }

    /// Rules (any chain) whose target is `chain`.
    pub fn rules_jumping_to<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a SavedRule> + 'a {
        if let Some(known) = &self.partial {
            known.need_jumps(chain);
        }
        self.chains
            .iter()
            .flat_map(|c| c.rules.iter())
            .filter(move |r| r.target.as_deref() == Some(chain))
    }

    /// How many rules jump or go to `chain` (0 when it does not exist). Read in-process, the
    /// kernel's count answers without listing the chains the jumps are in.
    pub fn references(&self, chain: &str) -> usize {
        match self.chain(chain) {
            None => 0,
            Some(c) => match c.use_count {
                Some(used) => (used as usize).saturating_sub(c.rules.len()),
                None => self.rules_jumping_to(chain).count(),
            },
        }
    }

    /// Rules (any chain) whose comment is exactly `comment`.
    pub fn rules_with_comment<'a>(&'a self, comment: &'a str) -> impl Iterator<Item = &'a SavedRule> + 'a {
        self.rules()
            .filter(move |r| r.comment.as_deref() == Some(comment))
    }

    /// True when `chain` has a rule with exactly these arguments (read in-process: a rule
    /// with the expressions iptables-nft writes for them).
    pub fn has_rule<S: AsRef<str>>(&self, chain: &str, args: &[S]) -> bool {
        self.find_rule(chain, args).is_some()
    }

    /// The first rule of `chain` with exactly these arguments (see [`SavedTable::has_rule`]).
    pub fn find_rule<S: AsRef<str>>(&self, chain: &str, args: &[S]) -> Option<&SavedRule> {
        let c = self.chain(chain)?;
        match self.nft_family {
            None => c.rules.iter().find(|r| {
                r.args.len() == args.len() && r.args.iter().zip(args).all(|(a, b)| a == b.as_ref())
            }),
            Some(family) => {
                let want = crate::iptables_nft::translate(family, args).ok()?;
                c.rules.iter().find(|r| r.exprs.as_ref() == Some(&want.exprs))
            }
        }
    }
}

/// Parses `iptables-save` output (one or more tables).
pub fn parse_save(text: &str) -> Result<Vec<SavedTable>, IptablesError> {
    let mut tables: Vec<SavedTable> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') || line == "COMMIT" {
            continue;
        }
        let bad = || IptablesError::Parse(format!("line {}: {line:?}", n + 1));
        if let Some(name) = line.strip_prefix('*') {
            tables.push(SavedTable {
                name: name.to_string(),
                ..SavedTable::default()
            });
            continue;
        }
        let table = tables.last_mut().ok_or_else(bad)?;
        if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let name = parts.next().ok_or_else(bad)?.to_string();
            let policy = parts.next().filter(|p| *p != "-").map(str::to_string);
            if !table.has_chain(&name) {
                table.chains.push(SavedChain {
                    name,
                    policy,
                    rules: Vec::new(),
                    use_count: None,
                });
            }
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            let args = split_args(spec).ok_or_else(bad)?;
            let rule = SavedRule {
                handle: None,
                exprs: None,
                chain: chain.to_string(),
                spec: spec.to_string(),
                comment: value_after(&args, "--comment"),
                target: value_after(&args, "-j").or_else(|| value_after(&args, "-g")),
                args,
            };
            match table.chains.iter_mut().find(|c| c.name == chain) {
                Some(c) => c.rules.push(rule),
                None => table.chains.push(SavedChain {
                    name: chain.to_string(),
                    policy: None,
                    rules: vec![rule],
                    use_count: None,
                }),
            }
        } else {
            return Err(bad());
        }
    }
    Ok(tables)
}

fn value_after(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Splits a rule the way `iptables-restore` does: whitespace separates arguments, double
/// quotes group, and `\"` / `\\` inside quotes are escapes. None on an unterminated quote.
pub fn split_args(spec: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut quoted = false;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_arg = true;
            }
            '\\' if quoted => match chars.next() {
                Some(e @ ('"' | '\\')) => cur.push(e),
                Some(other) => {
                    cur.push('\\');
                    cur.push(other);
                }
                None => cur.push('\\'),
            },
            c if c.is_whitespace() && !quoted => {
                if in_arg {
                    args.push(std::mem::take(&mut cur));
                    in_arg = false;
                }
            }
            c => {
                cur.push(c);
                in_arg = true;
            }
        }
    }
    if quoted {
        return None;
    }
    if in_arg {
        args.push(cur);
    }
    Some(args)
}

/// Quotes one argument for a restore line when it needs it (space, quote, backslash, empty).
pub fn quote_arg(arg: &str) -> String {
    let plain = !arg.is_empty()
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c == '\'');
    if plain {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn check_word(word: &str) -> Result<(), IptablesError> {
    if word.is_empty() || word.len() > 28 || word.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'')
    {
        return Err(IptablesError::Invalid(format!(
            "{word:?} is not a valid table or chain name"
        )));
    }
    Ok(())
}

/// One table's worth of changes for `iptables-restore --noflush`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreBatch {
    table: String,
    /// `:CHAIN - [0:0]` lines (create or flush), written before the commands.
    declares: Vec<String>,
    /// Command lines (`-N`, `-A`, `-I`, `-D`, `-F`, `-X`).
    lines: Vec<String>,
    /// The same changes, structured, in the order they apply (declarations first), for the
    /// in-process writer ([`crate::iptables_nft`]).
    ops: Vec<BatchOp>,
    invalid: Option<String>,
}

/// One change of a [`RestoreBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// `:CHAIN - [0:0]`: create the chain, or flush it when it exists.
    Declare(String),
    /// `-N CHAIN`.
    NewChain(String),
    /// `-A CHAIN ARGS`.
    Append(String, Vec<String>),
    /// `-I CHAIN POS ARGS`.
    Insert(String, u32, Vec<String>),
    /// `-D CHAIN ARGS`; the handle when the rule was read in-process.
    Delete(String, Vec<String>, Option<u64>),
    /// `-F CHAIN`.
    Flush(String),
    /// `-X CHAIN`.
    DeleteChain(String),
}

impl RestoreBatch {
    /// An empty batch for `table` (`nat`, `filter`, `mangle`, `raw`).
    pub fn new(table: impl Into<String>) -> Self {
        RestoreBatch {
            table: table.into(),
            declares: Vec::new(),
            lines: Vec::new(),
            ops: Vec::new(),
            invalid: None,
        }
    }

    /// The table the batch changes.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The changes in the order they apply.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Why the batch cannot be applied, when a name in it is invalid.
    pub fn invalid(&self) -> Option<&str> {
        self.invalid.as_deref()
    }

    fn op(&mut self, op: BatchOp) {
        if self.invalid.is_some() {
            return;
        }
        match op {
            // Declarations apply before every command line, as in the rendered text.
            BatchOp::Declare(_) => {
                let at = self
                    .ops
                    .iter()
                    .take_while(|o| matches!(o, BatchOp::Declare(_)))
                    .count();
                self.ops.insert(at, op);
            }
            other => self.ops.push(other),
        }
    }

    fn strings<S: AsRef<str>>(args: &[S]) -> Vec<String> {
        args.iter().map(|a| a.as_ref().to_string()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.declares.is_empty() && self.lines.is_empty()
    }

    fn chain_ok(&mut self, chain: &str) -> bool {
        if let Err(e) = check_word(chain) {
            self.invalid.get_or_insert(e.to_string());
            return false;
        }
        true
    }

    fn command<S: AsRef<str>>(
        &mut self,
        op: &str,
        chain: &str,
        extra: Option<&str>,
        args: &[S],
    ) -> &mut Self {
        if self.chain_ok(chain) {
            let mut line = format!("{op} {chain}");
            if let Some(extra) = extra {
                line.push(' ');
                line.push_str(extra);
            }
            for a in args {
                line.push(' ');
                line.push_str(&quote_arg(a.as_ref()));
            }
            self.lines.push(line);
        }
        self
    }

    /// Creates `chain` when `state` (read just before) does not have it; leaves it alone
    /// otherwise. Built-in chains always exist.
    pub fn ensure_chain(&mut self, state: &SavedTable, chain: &str) -> &mut Self {
        let planned = self.lines.iter().any(|l| l == &format!("-N {chain}"))
            || self.declares.iter().any(|d| d.starts_with(&format!(":{chain} ")));
        if state.has_chain(chain) || planned {
            return self;
        }
        self.op(BatchOp::NewChain(chain.to_string()));
        self.command::<&str>("-N", chain, None, &[])
    }

    /// `:CHAIN - [0:0]`: creates `chain`, or empties it when it exists.
    pub fn declare_chain(&mut self, chain: &str) -> &mut Self {
        if self.chain_ok(chain) {
            self.op(BatchOp::Declare(chain.to_string()));
            self.declares.push(format!(":{chain} - [0:0]"));
        }
        self
    }

    /// `-A CHAIN ARGS...`: appends a rule; arguments are quoted as needed.
    pub fn append<S: AsRef<str>>(&mut self, chain: &str, args: impl IntoIterator<Item = S>) -> &mut Self {
        let args: Vec<S> = args.into_iter().collect();
        self.op(BatchOp::Append(chain.to_string(), Self::strings(&args)));
        self.command("-A", chain, None, &args)
    }

    /// Appends the rule unless `state` already has exactly it in `chain` (so repeated ADDs do
    /// not stack duplicates of shared rules, like the PREROUTING jump).
    pub fn append_if_missing<S: AsRef<str>>(
        &mut self,
        state: &SavedTable,
        chain: &str,
        args: impl IntoIterator<Item = S>,
    ) -> &mut Self {
        let args: Vec<S> = args.into_iter().collect();
        if state.has_rule(chain, &args) {
            return self;
        }
        self.op(BatchOp::Append(chain.to_string(), Self::strings(&args)));
        self.command("-A", chain, None, &args)
    }

    /// `-I CHAIN POS ARGS...` (positions count from 1).
    pub fn insert<S: AsRef<str>>(
        &mut self,
        chain: &str,
        position: u32,
        args: impl IntoIterator<Item = S>,
    ) -> &mut Self {
        let args: Vec<S> = args.into_iter().collect();
        self.op(BatchOp::Insert(
            chain.to_string(),
            position.max(1),
            Self::strings(&args),
        ));
        self.command("-I", chain, Some(&position.max(1).to_string()), &args)
    }

    /// `-D CHAIN ARGS...`: deletes the first rule with these arguments (the batch fails when
    /// there is none).
    pub fn delete<S: AsRef<str>>(&mut self, chain: &str, args: impl IntoIterator<Item = S>) -> &mut Self {
        let args: Vec<S> = args.into_iter().collect();
        self.op(BatchOp::Delete(chain.to_string(), Self::strings(&args), None));
        self.command("-D", chain, None, &args)
    }

    /// Deletes a rule found in a reading of the table ([`IptablesRunner::save`] or the
    /// in-process one, which deletes it by its handle).
    pub fn delete_saved(&mut self, rule: &SavedRule) -> &mut Self {
        self.op(BatchOp::Delete(
            rule.chain.clone(),
            rule.args.clone(),
            rule.handle,
        ));
        let chain = rule.chain.clone();
        self.command("-D", &chain, None, &rule.args)
    }

    /// `-F CHAIN`: deletes every rule of `chain`.
    pub fn flush_chain(&mut self, chain: &str) -> &mut Self {
        self.op(BatchOp::Flush(chain.to_string()));
        self.command::<&str>("-F", chain, None, &[])
    }

    /// `-X CHAIN`: deletes an empty chain nothing jumps to.
    pub fn delete_chain(&mut self, chain: &str) -> &mut Self {
        self.op(BatchOp::DeleteChain(chain.to_string()));
        self.command::<&str>("-X", chain, None, &[])
    }

    /// The text given to `iptables-restore`.
    pub fn render(&self) -> Result<String, IptablesError> {
        if let Some(why) = &self.invalid {
            return Err(IptablesError::Invalid(why.clone()));
        }
        check_word(&self.table)?;
        let mut out = format!("*{}\n", self.table);
        for line in self.declares.iter().chain(&self.lines) {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Sat Nov 28 01:43:57 2026
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-abc - [0:0]
-A POSTROUTING -s 10.0.0.5/32 -m comment --comment "name: \"n\" id: \"c\"" -j CNI-abc
-A CNI-abc -d 10.0.0.0/24 -m comment --comment "name: \"n\" id: \"c\"" -j ACCEPT
-A CNI-abc ! -d 224.0.0.0/4 -m comment --comment "name: \"n\" id: \"c\"" -j MASQUERADE
COMMIT
# Completed on Sat Nov 28 01:43:57 2026
"#;

    #[test]
    fn parses_chains_rules_comments_and_targets() {
        let tables = parse_save(SAVED).unwrap();
        assert_eq!(tables.len(), 1);
        let t = &tables[0];
        assert_eq!(t.name, "nat");
        assert_eq!(
            t.chains.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["PREROUTING", "POSTROUTING", "CNI-abc"]
        );
        assert_eq!(t.chain("PREROUTING").unwrap().policy.as_deref(), Some("ACCEPT"));
        assert_eq!(t.chain("CNI-abc").unwrap().policy, None);
        let jumps: Vec<_> = t.rules_jumping_to("CNI-abc").collect();
        assert_eq!(jumps.len(), 1);
        assert_eq!(jumps[0].chain, "POSTROUTING");
        assert_eq!(jumps[0].comment.as_deref(), Some(r#"name: "n" id: "c""#));
        assert_eq!(t.rules_with_comment(r#"name: "n" id: "c""#).count(), 3);
        let masq = &t.chain("CNI-abc").unwrap().rules[1];
        assert_eq!(masq.args[..2], ["!", "-d"]);
        assert_eq!(masq.target.as_deref(), Some("MASQUERADE"));
    }

    #[test]
    fn quoting_round_trips_through_the_splitter() {
        for arg in ["plain", "two words", r#"name: "n" id: "c""#, r"back\slash", ""] {
            let quoted = quote_arg(arg);
            assert_eq!(split_args(&quoted).unwrap(), [arg], "{quoted}");
        }
        assert_eq!(
            split_args(r#"-m comment --comment "a \"b\"" -j X"#).unwrap(),
            ["-m", "comment", "--comment", r#"a "b""#, "-j", "X"]
        );
        assert_eq!(split_args(r#"--comment "open"#), None);
    }

    #[test]
    fn batch_renders_declares_first_and_skips_what_exists() {
        let state = &parse_save(SAVED).unwrap()[0];
        let mut b = RestoreBatch::new("nat");
        b.ensure_chain(state, "CNI-abc")
            .ensure_chain(state, "CNI-HOSTPORT-DNAT")
            .ensure_chain(state, "CNI-HOSTPORT-DNAT")
            .append_if_missing(
                state,
                "CNI-abc",
                [
                    "-d",
                    "10.0.0.0/24",
                    "-m",
                    "comment",
                    "--comment",
                    r#"name: "n" id: "c""#,
                    "-j",
                    "ACCEPT",
                ],
            )
            .insert(
                "POSTROUTING",
                1,
                ["-m", "mark", "--mark", "0x2000/0x2000", "-j", "MASQUERADE"],
            )
            .declare_chain("CNI-DN-1")
            .append(
                "CNI-DN-1",
                [
                    "-p",
                    "tcp",
                    "-m",
                    "comment",
                    "--comment",
                    "dnat name: \"net\"",
                    "-j",
                    "DNAT",
                ],
            )
            .delete_saved(state.rules_jumping_to("CNI-abc").next().unwrap())
            .flush_chain("CNI-abc")
            .delete_chain("CNI-abc");
        let want = "*nat\n\
            :CNI-DN-1 - [0:0]\n\
            -N CNI-HOSTPORT-DNAT\n\
            -I POSTROUTING 1 -m mark --mark 0x2000/0x2000 -j MASQUERADE\n\
            -A CNI-DN-1 -p tcp -m comment --comment \"dnat name: \\\"net\\\"\" -j DNAT\n\
            -D POSTROUTING -s 10.0.0.5/32 -m comment --comment \"name: \\\"n\\\" id: \\\"c\\\"\" -j CNI-abc\n\
            -F CNI-abc\n\
            -X CNI-abc\n\
            COMMIT\n";
        assert_eq!(b.render().unwrap(), want);
    }

    #[test]
    fn bad_chain_names_fail_rendering() {
        let mut b = RestoreBatch::new("nat");
        b.append("has space", ["-j", "ACCEPT"]);
        assert!(matches!(b.render(), Err(IptablesError::Invalid(_))));
        assert!(RestoreBatch::new("nat").is_empty());
    }
}
