//! `DistEnv` from torchrun's, the launcher's and Slurm's variables, and the errors that name a bad one.

use ect_dist::env::expand_hostlist;
use ect_dist::launch::worker_env;
use ect_dist::{DistEnv, EnvError, Launcher, Rendezvous, StoreHost};
use std::collections::HashMap;

fn parse(vars: &[(&str, &str)]) -> Result<DistEnv, EnvError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    DistEnv::from_vars(|name| map.get(name).cloned())
}

/// The variables torchrun 2.11 sets for a worker (local_elastic_agent.py), rank 3 of 4 on 2 nodes.
fn torchrun_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("RANK", "3"),
        ("GROUP_RANK", "1"),
        ("ROLE_RANK", "3"),
        ("ROLE_NAME", "default"),
        ("LOCAL_WORLD_SIZE", "2"),
        ("WORLD_SIZE", "4"),
        ("GROUP_WORLD_SIZE", "2"),
        ("ROLE_WORLD_SIZE", "4"),
        ("MASTER_ADDR", "node01"),
        ("MASTER_PORT", "29400"),
        ("TORCHELASTIC_RESTART_COUNT", "2"),
        ("TORCHELASTIC_MAX_RESTARTS", "3"),
        ("TORCHELASTIC_RUN_ID", "none"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ("LOCAL_RANK", "1"),
    ]
}

#[test]
fn no_variables_is_a_single_process() {
    assert_eq!(parse(&[]).unwrap(), DistEnv::single());
    // Empty values count as unset.
    assert_eq!(
        parse(&[("RANK", ""), ("SLURM_PROCID", " ")]).unwrap(),
        DistEnv::single()
    );
}

#[test]
fn torchrun_with_agent_store_connects_under_the_attempt_prefix() {
    let env = parse(&torchrun_vars()).unwrap();
    assert_eq!(
        env,
        DistEnv {
            rank: 3,
            world_size: 4,
            local_rank: 1,
            local_world_size: 2,
            rendezvous: Some(Rendezvous {
                addr: "node01".into(),
                port: 29400,
                store: StoreHost::Agent { restart_count: 2 },
            }),
            launcher: Launcher::Torchrun,
        }
    );
    assert_eq!(
        env.rendezvous.unwrap().attempt_prefix().as_deref(),
        Some("/worker/attempt_2")
    );
    assert!(!parse(&torchrun_vars()).unwrap().is_main());
}

#[test]
fn without_the_agent_store_rank_0_hosts_it() {
    let mut vars = torchrun_vars();
    vars.retain(|(k, _)| *k != "TORCHELASTIC_USE_AGENT_STORE");
    let env = parse(&vars).unwrap();
    let rdzv = env.rendezvous.unwrap();
    assert_eq!(rdzv.store, StoreHost::Rank0);
    assert_eq!(rdzv.attempt_prefix(), None);
    // torch compares with str(True) exactly.
    vars.push(("TORCHELASTIC_USE_AGENT_STORE", "False"));
    assert_eq!(
        parse(&vars).unwrap().rendezvous.unwrap().store,
        StoreHost::Rank0
    );
}

#[test]
fn the_launchers_environment_parses_back_to_its_ranks() {
    let vars = worker_env(2, 3, 40123, "run");
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let env = parse(&vars).unwrap();
    assert_eq!(
        (
            env.rank,
            env.world_size,
            env.local_rank,
            env.local_world_size
        ),
        (2, 3, 2, 3)
    );
    let rdzv = env.rendezvous.unwrap();
    assert_eq!((rdzv.addr.as_str(), rdzv.port), ("127.0.0.1", 40123));
    assert_eq!(rdzv.store, StoreHost::Rank0);
}

#[test]
fn hand_set_rank_and_world_default_to_one_node() {
    let env = parse(&[
        ("RANK", "5"),
        ("WORLD_SIZE", "8"),
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "1234"),
    ])
    .unwrap();
    assert_eq!((env.local_rank, env.local_world_size), (5, 8));
}

#[test]
fn torchrun_errors_name_the_variable_and_value() {
    let without = |var: &str| {
        let mut vars = torchrun_vars();
        vars.retain(|(k, _)| *k != var);
        parse(&vars).unwrap_err()
    };
    for var in ["MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK"] {
        let err = without(var);
        assert!(
            matches!(&err, EnvError::Missing { var: v, .. } if *v == var),
            "{var}: {err}"
        );
        assert!(err.to_string().contains(var), "{err}");
    }
    let with = |var: &'static str, value: &'static str| {
        let mut vars = torchrun_vars();
        vars.retain(|(k, _)| *k != var);
        vars.push((var, value));
        parse(&vars).unwrap_err().to_string()
    };
    assert_eq!(
        with("RANK", "4"),
        "RANK=\"4\" is invalid: must be below WORLD_SIZE (4)"
    );
    assert_eq!(
        with("MASTER_PORT", "70000"),
        "MASTER_PORT=\"70000\" is invalid: not a TCP port (1-65535)"
    );
    assert_eq!(
        with("WORLD_SIZE", "0"),
        "WORLD_SIZE=\"0\" is invalid: must be at least 1"
    );
    assert_eq!(
        with("LOCAL_RANK", "two"),
        "LOCAL_RANK=\"two\" is invalid: not a non-negative integer"
    );
    assert_eq!(
        with("TORCHELASTIC_RESTART_COUNT", "-1"),
        "TORCHELASTIC_RESTART_COUNT=\"-1\" is invalid: not a non-negative integer"
    );
}

fn slurm_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SLURM_PROCID", "5"),
        ("SLURM_NTASKS", "8"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_NODEID", "2"),
        ("SLURM_STEP_TASKS_PER_NODE", "2(x3),2"),
        ("SLURM_STEP_NODELIST", "gpu[007-009],gpu12"),
        ("SLURM_NODELIST", "other[1-9]"),
        ("SLURM_JOB_ID", "123456"),
    ]
}

#[test]
fn slurm_maps_to_ranks_and_the_first_node_of_the_step() {
    let env = parse(&slurm_vars()).unwrap();
    assert_eq!(
        env,
        DistEnv {
            rank: 5,
            world_size: 8,
            local_rank: 1,
            local_world_size: 2,
            rendezvous: Some(Rendezvous {
                addr: "gpu007".into(),
                port: 15000 + 3456,
                store: StoreHost::Rank0,
            }),
            launcher: Launcher::Slurm,
        }
    );
    // MASTER_ADDR and MASTER_PORT win when given; the job's node list serves when the step's is absent.
    let mut vars = slurm_vars();
    vars.extend([("MASTER_ADDR", "head"), ("MASTER_PORT", "2222")]);
    let rdzv = parse(&vars).unwrap().rendezvous.unwrap();
    assert_eq!((rdzv.addr.as_str(), rdzv.port), ("head", 2222));
    let mut vars = slurm_vars();
    vars.retain(|(k, _)| *k != "SLURM_STEP_NODELIST");
    assert_eq!(parse(&vars).unwrap().rendezvous.unwrap().addr, "other1");
}

#[test]
fn slurm_tasks_per_node_forms() {
    let with = |extra: &[(&'static str, &'static str)], node: &'static str| {
        let mut vars = slurm_vars();
        vars.retain(|(k, _)| !k.contains("TASKS_PER_NODE") && *k != "SLURM_NODEID");
        vars.push(("SLURM_NODEID", node));
        vars.retain(|(k, _)| *k != "SLURM_LOCALID");
        vars.push(("SLURM_LOCALID", "0"));
        vars.extend_from_slice(extra);
        parse(&vars)
    };
    let local = |extra: &[(&'static str, &'static str)], node: &'static str| {
        with(extra, node).unwrap().local_world_size
    };
    assert_eq!(local(&[("SLURM_STEP_TASKS_PER_NODE", "4,2(x2),1")], "0"), 4);
    assert_eq!(local(&[("SLURM_STEP_TASKS_PER_NODE", "4,2(x2),1")], "2"), 2);
    assert_eq!(local(&[("SLURM_STEP_TASKS_PER_NODE", "4,2(x2),1")], "3"), 1);
    assert_eq!(local(&[("SLURM_NTASKS_PER_NODE", "3")], "1"), 3);
    assert_eq!(local(&[("SLURM_TASKS_PER_NODE", "1,3(x2)")], "1"), 3);
    assert_eq!(
        with(&[("SLURM_STEP_TASKS_PER_NODE", "2(x2)")], "2")
            .unwrap_err()
            .to_string(),
        "SLURM_STEP_TASKS_PER_NODE=\"2(x2)\" is invalid: lists 2 nodes, but this is node 2 (SLURM_NODEID)"
    );
    let err = with(&[], "0").unwrap_err();
    assert!(
        matches!(
            err,
            EnvError::Missing {
                var: "SLURM_STEP_TASKS_PER_NODE",
                launcher: Launcher::Slurm,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn slurm_errors_name_the_variable() {
    let without = |var: &str| {
        let mut vars = slurm_vars();
        vars.retain(|(k, _)| *k != var);
        parse(&vars).unwrap_err().to_string()
    };
    assert!(without("SLURM_NTASKS").starts_with("SLURM_NTASKS is not set"));
    assert!(without("SLURM_LOCALID").starts_with("SLURM_LOCALID is not set"));
    let mut vars = slurm_vars();
    vars.retain(|(k, _)| !k.contains("NODELIST"));
    assert!(parse(&vars)
        .unwrap_err()
        .to_string()
        .starts_with("MASTER_ADDR is not set"));
    let mut vars = slurm_vars();
    vars.retain(|(k, _)| *k != "SLURM_JOB_ID");
    assert!(parse(&vars)
        .unwrap_err()
        .to_string()
        .starts_with("MASTER_PORT is not set"));
    let mut vars = slurm_vars();
    vars.retain(|(k, _)| *k != "SLURM_STEP_NODELIST");
    vars.retain(|(k, _)| *k != "SLURM_NODELIST");
    vars.push(("SLURM_NODELIST", "gpu[1-"));
    assert_eq!(
        parse(&vars).unwrap_err().to_string(),
        "SLURM_NODELIST=\"gpu[1-\" is invalid: \"gpu[1-\" has an unclosed '['"
    );
    // torchrun's variables win over Slurm's (torchrun inside an srun step).
    let mut vars = slurm_vars();
    vars.extend(torchrun_vars());
    assert_eq!(parse(&vars).unwrap().launcher, Launcher::Torchrun);
}

#[test]
fn slurm_host_lists_expand_in_order() {
    assert_eq!(
        expand_hostlist("node[01-04,07]").unwrap(),
        ["node01", "node02", "node03", "node04", "node07"]
    );
    assert_eq!(
        expand_hostlist("a1,b[8-10],c").unwrap(),
        ["a1", "b8", "b9", "b10", "c"]
    );
    assert_eq!(
        expand_hostlist("rack[1-2]-n[0-1]").unwrap(),
        ["rack1-n0", "rack1-n1", "rack2-n0", "rack2-n1"]
    );
    assert_eq!(expand_hostlist("single").unwrap(), ["single"]);
    assert!(expand_hostlist("n[3-1]")
        .unwrap_err()
        .contains("runs backwards"));
    assert!(expand_hostlist("n[a]")
        .unwrap_err()
        .contains("not a number"));
    assert!(expand_hostlist("n]").unwrap_err().contains("unbalanced"));
}
