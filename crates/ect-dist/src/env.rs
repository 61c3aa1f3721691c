//! Where this process sits in a distributed run, read from the launcher's environment variables.
//!
//! Three sources, in this order:
//! 1. torchrun (and anything that sets the same variables, such as [`crate::launch`]): `RANK`,
//!    `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`, and
//!    `TORCHELASTIC_USE_AGENT_STORE` / `TORCHELASTIC_RESTART_COUNT` when torchrun's agent hosts the
//!    store;
//! 2. Slurm's `srun`: `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, the tasks per node
//!    (`SLURM_STEP_TASKS_PER_NODE`, `SLURM_NTASKS_PER_NODE` or `SLURM_TASKS_PER_NODE`), the master host
//!    from `MASTER_ADDR` or the first host of the step's (or job's) node list, the port from
//!    `MASTER_PORT` or derived from `SLURM_JOB_ID`;
//! 3. none of them: a single process (world size 1, no process group).
//!
//! Pure logic over a variable lookup, so that it is tested without touching the process environment.

use std::fmt;

/// A missing or malformed launcher variable; the message names the variable and its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A variable the detected launcher always sets is absent.
    #[error("{var} is not set, but {launcher} variables are ({why}); set it or unset the others")]
    Missing {
        /// The absent variable.
        var: &'static str,
        /// The launcher whose other variables were found.
        launcher: Launcher,
        /// Which variables revealed the launcher.
        why: String,
    },
    /// A variable holds a value that cannot be used.
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Which launcher started this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// No launcher variables: one process.
    Single,
    /// torchrun, `ect_dist::launch`, or a hand-set `RANK`/`WORLD_SIZE` environment.
    Torchrun,
    /// Slurm's `srun`.
    Slurm,
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Launcher::Single => "single-process",
            Launcher::Torchrun => "torchrun",
            Launcher::Slurm => "Slurm",
        })
    }
}

/// Who hosts the rendezvous store (a c10d `TCPStore`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHost {
    /// Rank 0 binds `MASTER_ADDR:MASTER_PORT`; the other ranks connect to it.
    Rank0,
    /// torchrun's agent hosts it (`TORCHELASTIC_USE_AGENT_STORE=True`): every rank is a client, and keys
    /// live under `/worker/attempt_<restart_count>/` so that a restarted worker group does not read the
    /// previous attempt's keys from the agent's long-lived store.
    Agent {
        /// `TORCHELASTIC_RESTART_COUNT`.
        restart_count: u32,
    },
}

/// The rendezvous point of a multi-process run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// `MASTER_ADDR`: the host of the store.
    pub addr: String,
    /// `MASTER_PORT`: the store's port.
    pub port: u16,
    /// Who hosts the store.
    pub store: StoreHost,
}

impl Rendezvous {
    /// The key prefix torchrun's agent store needs (see [`StoreHost::Agent`]), if any.
    pub fn attempt_prefix(&self) -> Option<String> {
        match self.store {
            StoreHost::Rank0 => None,
            StoreHost::Agent { restart_count } => Some(format!("/worker/attempt_{restart_count}")),
        }
    }
}

/// This process's place in the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes in the run.
    pub world_size: usize,
    /// Rank among the processes of this node, `0..local_world_size`; the CUDA device index.
    pub local_rank: usize,
    /// Number of processes on this node.
    pub local_world_size: usize,
    /// The store to meet at; `None` for a single process without launcher variables.
    pub rendezvous: Option<Rendezvous>,
    /// Which launcher's variables were read.
    pub launcher: Launcher,
}

impl DistEnv {
    /// One process, no launcher: world size 1, no rendezvous.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: 1,
            rendezvous: None,
            launcher: Launcher::Single,
        }
    }

    /// Reads the process environment (see the module docs).
    pub fn from_process_env() -> Result<Self, EnvError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (the process environment in [`DistEnv::from_process_env`]).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        if get("RANK").is_some() || get("WORLD_SIZE").is_some() {
            torchrun(&get)
        } else if get("SLURM_PROCID").is_some() {
            slurm(&get)
        } else {
            Ok(Self::single())
        }
    }

    /// Whether this is the process that writes (rank 0).
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

fn torchrun(get: &impl Fn(&str) -> Option<String>) -> Result<DistEnv, EnvError> {
    let launcher = Launcher::Torchrun;
    let why = || {
        ["RANK", "WORLD_SIZE"]
            .iter()
            .filter(|v| get(v).is_some())
            .map(|v| format!("{v}={}", get(v).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let required = |var: &'static str| require(get, var, launcher, &why);
    let world_size = positive("WORLD_SIZE", &required("WORLD_SIZE")?)?;
    let rank = below("RANK", &required("RANK")?, world_size, "WORLD_SIZE")?;
    // A hand-made RANK/WORLD_SIZE environment may omit the local variables: then all ranks are taken to
    // share one node.
    let local_world_size = match get("LOCAL_WORLD_SIZE") {
        Some(v) => positive("LOCAL_WORLD_SIZE", &v)?,
        None => world_size,
    };
    let local_rank = match get("LOCAL_RANK") {
        Some(v) => below("LOCAL_RANK", &v, local_world_size, "LOCAL_WORLD_SIZE")?,
        None => rank % local_world_size,
    };
    let addr = required("MASTER_ADDR")?;
    let port = port("MASTER_PORT", &required("MASTER_PORT")?)?;
    let store = match get("TORCHELASTIC_USE_AGENT_STORE").as_deref() {
        // torch compares with str(True) exactly.
        Some("True") => StoreHost::Agent {
            restart_count: match get("TORCHELASTIC_RESTART_COUNT") {
                Some(v) => number("TORCHELASTIC_RESTART_COUNT", &v)?,
                None => 0,
            },
        },
        _ => StoreHost::Rank0,
    };
    Ok(DistEnv {
        rank,
        world_size,
        local_rank,
        local_world_size,
        rendezvous: Some(Rendezvous { addr, port, store }),
        launcher,
    })
}

fn slurm(get: &impl Fn(&str) -> Option<String>) -> Result<DistEnv, EnvError> {
    let launcher = Launcher::Slurm;
    let why = || format!("SLURM_PROCID={}", get("SLURM_PROCID").unwrap_or_default());
    let required = |var: &'static str| require(get, var, launcher, &why);
    let world_size = positive("SLURM_NTASKS", &required("SLURM_NTASKS")?)?;
    let rank = below(
        "SLURM_PROCID",
        &required("SLURM_PROCID")?,
        world_size,
        "SLURM_NTASKS",
    )?;
    let node_id: usize = match get("SLURM_NODEID") {
        Some(v) => number("SLURM_NODEID", &v)?,
        None => 0,
    };
    let local_world_size = if let Some(v) = get("SLURM_STEP_TASKS_PER_NODE") {
        tasks_on_node("SLURM_STEP_TASKS_PER_NODE", &v, node_id)?
    } else if let Some(v) = get("SLURM_NTASKS_PER_NODE") {
        positive("SLURM_NTASKS_PER_NODE", &v)?
    } else if let Some(v) = get("SLURM_TASKS_PER_NODE") {
        tasks_on_node("SLURM_TASKS_PER_NODE", &v, node_id)?
    } else {
        return Err(EnvError::Missing {
            var: "SLURM_STEP_TASKS_PER_NODE",
            launcher,
            why: why(),
        });
    };
    let local_rank = below(
        "SLURM_LOCALID",
        &required("SLURM_LOCALID")?,
        local_world_size,
        "the tasks on this node",
    )?;
    let addr = match get("MASTER_ADDR") {
        Some(addr) => addr,
        None => {
            let (var, list) = [
                "SLURM_STEP_NODELIST",
                "SLURM_NODELIST",
                "SLURM_JOB_NODELIST",
            ]
            .into_iter()
            .find_map(|var| get(var).map(|list| (var, list)))
            .ok_or(EnvError::Missing {
                var: "MASTER_ADDR",
                launcher,
                why: format!("{}, and no SLURM_STEP_NODELIST or SLURM_NODELIST", why()),
            })?;
            let hosts = expand_hostlist(&list).map_err(|reason| EnvError::Invalid {
                var,
                value: list.clone(),
                reason,
            })?;
            hosts.into_iter().next().ok_or_else(|| EnvError::Invalid {
                var,
                value: list.clone(),
                reason: "names no host".to_owned(),
            })?
        }
    };
    let port = match get("MASTER_PORT") {
        Some(v) => port("MASTER_PORT", &v)?,
        None => match get("SLURM_JOB_ID") {
            // Every task of the job derives the same port; the range avoids well-known ports and the
            // ephemeral range, as PyTorch Lightning does.
            Some(v) => {
                let job: u64 = number("SLURM_JOB_ID", &v)?;
                15000 + (job % 10000) as u16
            }
            None => {
                return Err(EnvError::Missing {
                    var: "MASTER_PORT",
                    launcher,
                    why: format!("{}, and no SLURM_JOB_ID to derive it from", why()),
                })
            }
        },
    };
    Ok(DistEnv {
        rank,
        world_size,
        local_rank,
        local_world_size,
        rendezvous: Some(Rendezvous {
            addr,
            port,
            store: StoreHost::Rank0,
        }),
        launcher,
    })
}

/// The value of `var`, which `launcher` always sets (`why` names the variables that revealed it).
fn require(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    launcher: Launcher,
    why: &dyn Fn() -> String,
) -> Result<String, EnvError> {
    get(var).ok_or_else(|| EnvError::Missing {
        var,
        launcher,
        why: why(),
    })
}

fn number<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, EnvError> {
    value.trim().parse().map_err(|_| EnvError::Invalid {
        var,
        value: value.to_owned(),
        reason: "not a non-negative integer".to_owned(),
    })
}

fn positive(var: &'static str, value: &str) -> Result<usize, EnvError> {
    let n: usize = number(var, value)?;
    if n == 0 {
        return Err(EnvError::Invalid {
            var,
            value: value.to_owned(),
            reason: "must be at least 1".to_owned(),
        });
    }
    Ok(n)
}

fn below(
    var: &'static str,
    value: &str,
    bound: usize,
    bound_name: &str,
) -> Result<usize, EnvError> {
    let n: usize = number(var, value)?;
    if n >= bound {
        return Err(EnvError::Invalid {
            var,
            value: value.to_owned(),
            reason: format!("must be below {bound_name} ({bound})"),
        });
    }
    Ok(n)
}

fn port(var: &'static str, value: &str) -> Result<u16, EnvError> {
    match value.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(EnvError::Invalid {
            var,
            value: value.to_owned(),
            reason: "not a TCP port (1-65535)".to_owned(),
        }),
    }
}

/// The task count of node `node_id` in Slurm's compressed per-node list, e.g. `2(x3),1` = 2, 2, 2, 1.
fn tasks_on_node(var: &'static str, value: &str, node_id: usize) -> Result<usize, EnvError> {
    let invalid = |reason: String| EnvError::Invalid {
        var,
        value: value.to_owned(),
        reason,
    };
    let mut node = 0usize;
    for item in value.split(',') {
        let item = item.trim();
        let (count, repeat) = match item.split_once("(x") {
            Some((count, rest)) => {
                let repeat = rest
                    .strip_suffix(')')
                    .ok_or_else(|| invalid(format!("{item:?} lacks a closing parenthesis")))?;
                (count, repeat)
            }
            None => (item, "1"),
        };
        let count: usize = count
            .parse()
            .map_err(|_| invalid(format!("{count:?} is not a task count")))?;
        let repeat: usize = repeat
            .parse()
            .map_err(|_| invalid(format!("{repeat:?} is not a repetition count")))?;
        if node_id < node + repeat {
            if count == 0 {
                return Err(invalid(format!("node {node_id} has no tasks")));
            }
            return Ok(count);
        }
        node += repeat;
    }
    Err(invalid(format!(
        "lists {node} nodes, but this is node {node_id} (SLURM_NODEID)"
    )))
}

/// Expands a Slurm host list such as `node[01-04,07],gpu5,rack[1-2]-n[1-2]` into host names, in
/// Slurm's order (zero padding kept, later bracket groups varying fastest).
pub fn expand_hostlist(list: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for item in split_top_level(list)? {
        let mut expanded = vec![String::new()];
        let mut rest = item.as_str();
        while let Some(open) = rest.find('[') {
            let close = rest[open..]
                .find(']')
                .map(|i| open + i)
                .ok_or_else(|| format!("{item:?} has an unclosed '['"))?;
            let choices = expand_ranges(&rest[open + 1..close])?;
            let prefix = &rest[..open];
            expanded = expanded
                .iter()
                .flat_map(|head| choices.iter().map(move |c| format!("{head}{prefix}{c}")))
                .collect();
            rest = &rest[close + 1..];
        }
        if rest.contains(']') {
            return Err(format!("{item:?} has an unmatched ']'"));
        }
        hosts.extend(expanded.into_iter().map(|h| h + rest));
    }
    Ok(hosts)
}

/// Splits at commas outside brackets, dropping empty items.
fn split_top_level(list: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in list.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("{list:?} has unbalanced or nested brackets"));
        }
        current.push(c);
    }
    if depth != 0 {
        return Err(format!("{list:?} has an unclosed '['"));
    }
    items.push(current);
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// `01-03,7` -> `01`, `02`, `03`, `7` (the width of a range's start is kept).
fn expand_ranges(spec: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let bad = || format!("{part:?} in [{spec}] is not a number or a range a-b");
        match part.split_once('-') {
            Some((lo, hi)) => {
                let width = lo.len();
                let lo_n: u64 = lo.parse().map_err(|_| bad())?;
                let hi_n: u64 = hi.parse().map_err(|_| bad())?;
                if hi_n < lo_n {
                    return Err(format!("range {part:?} in [{spec}] runs backwards"));
                }
                out.extend((lo_n..=hi_n).map(|n| format!("{n:0width$}")));
            }
            None => {
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                out.push(part.to_owned());
            }
        }
    }
    Ok(out)
}
