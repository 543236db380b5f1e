use serde_json::{Value, json};

use crate::common::*;

/// Records in the persistent cache which job used it, and prints the previous user.
const CACHE_SCRIPT: &str = r#"
cache="$SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"
test "$cache" = /opt/ml/sagemaker/warmpoolcache || test -d "$cache" || exit 3
prev=$(cat "$cache/last-user" 2>/dev/null || echo none)
echo "$prev" > /opt/ml/model/previous-user
echo "$TRAINING_JOB_NAME" > "$cache/last-user"
"#;

fn pooled(name: &str, keep_alive: i64) -> Value {
    let mut j = job(name, "", None);
    j["AlgorithmSpecification"]["ContainerEntrypoint"] = json!(["sh", "cache.sh"]);
    j["ResourceConfig"]["KeepAlivePeriodInSeconds"] = json!(keep_alive);
    j
}

fn previous_user(h: &Home, name: &str) -> String {
    let files = untar(&h.object("out", &format!("jobs/{name}/output/model.tar.gz")));
    file_text(&files, "previous-user").trim().to_string()
}

/// A home whose work directory holds the cache script.
fn home() -> Home {
    let h = Home::new();
    h.data(".", &[("cache.sh", CACHE_SCRIPT.as_bytes())]);
    h
}

fn warm(h: &Home, name: &str) -> Value {
    h.describe(name)["WarmPoolStatus"].clone()
}

#[test]
fn a_matching_job_takes_over_the_pool_and_finds_the_cache() {
    let h = home();
    let out = h.train(&pooled("wp-first", 600));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(previous_user(&h, "wp-first"), "none");
    let w = warm(&h, "wp-first");
    assert_eq!(w["Status"], "Available", "{w}");
    assert!(w.get("ReusedByJob").is_none());
    assert_eq!(
        h.describe("wp-first")["ResourceConfig"]["KeepAlivePeriodInSeconds"],
        600
    );

    let out = h.train(&pooled("wp-second", 300));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(previous_user(&h, "wp-second"), "wp-first");
    let w = warm(&h, "wp-first");
    assert_eq!(w["Status"], "Reused", "{w}");
    assert_eq!(w["ReusedByJob"], "wp-second");
    assert_eq!(warm(&h, "wp-second")["Status"], "Available");
    let log =
        std::fs::read_to_string(h.home.path().join("jobs/wp-second/logs/platform.log")).unwrap();
    assert!(log.contains("Reusing warm pool wp-first"), "{log}");

    // A different instance type does not match: a cold start with an empty cache.
    let mut other = pooled("wp-other-type", 300);
    other["ResourceConfig"]["InstanceType"] = json!("ml.m5.xlarge");
    assert!(h.train(&other).status.success());
    assert_eq!(previous_user(&h, "wp-other-type"), "none");
    // Nor does a different role.
    let mut role = pooled("wp-other-role", 300);
    role["RoleArn"] = json!("arn:aws:iam::000000000000:role/another");
    assert!(h.train(&role).status.success());
    assert_eq!(previous_user(&h, "wp-other-role"), "none");
    // A job without a keep-alive period neither takes a pool nor gets a cache.
    let plain = job(
        "wp-plain",
        "test -z \"$SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY\"",
        None,
    );
    assert!(h.train(&plain).status.success());
    assert!(h.describe("wp-plain").get("WarmPoolStatus").is_none());
    assert_eq!(warm(&h, "wp-second")["Status"], "Available");

    // The list filter sees the states.
    let list = h.run(&["jobs", "list", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let reused: Vec<&str> = list["TrainingJobSummaries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["WarmPoolStatus"]["Status"] == "Reused")
        .map(|s| s["TrainingJobName"].as_str().unwrap())
        .collect();
    assert_eq!(reused, ["wp-first"]);
}

#[test]
fn update_to_zero_terminates_and_releases_the_pool() {
    let h = home();
    assert!(h.train(&pooled("wp-upd", 600)).status.success());
    let pool_dir = h.home.path().join("warm-pools/wp-upd");
    assert!(pool_dir.join("algo-1/last-user").exists());

    let bad = h.run(&["jobs", "update", "wp-upd", "--keep-alive", "21601"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("less than or equal to 21600"),
        "{}",
        text(&bad)
    );
    let longer = h.run(&["jobs", "update", "wp-upd", "--keep-alive", "1200"]);
    assert!(longer.status.success(), "{}", text(&longer));
    assert_eq!(
        h.describe("wp-upd")["ResourceConfig"]["KeepAlivePeriodInSeconds"],
        1200
    );

    let out = h.run(&["jobs", "update", "wp-upd", "--keep-alive", "0"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(warm(&h, "wp-upd")["Status"], "Terminated");
    assert!(
        !pool_dir.exists(),
        "the terminated pool's cache is released"
    );
    // A terminated pool is not taken over, and cannot be updated again.
    assert!(h.train(&pooled("wp-after", 60)).status.success());
    assert_eq!(previous_user(&h, "wp-after"), "none");
    let again = h.run(&["jobs", "update", "wp-upd", "--keep-alive", "60"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("is Terminated"), "{}", text(&again));
    let none = h.run(&["jobs", "update", "wp-never", "--keep-alive", "60"]);
    assert!(!none.status.success());
}

#[test]
fn an_expired_pool_is_terminated_and_released_by_the_next_run() {
    let h = home();
    assert!(h.train(&pooled("wp-short", 1)).status.success());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let w = warm(&h, "wp-short");
    assert_eq!(w["Status"], "Terminated", "{w}");
    assert_eq!(w["ResourceRetainedBillableTimeInSeconds"], 1);
    assert!(h.train(&pooled("wp-later", 60)).status.success());
    assert_eq!(previous_user(&h, "wp-later"), "none");
    assert!(!h.home.path().join("warm-pools/wp-short").exists());
}

#[test]
fn a_failed_job_keeps_its_pool_but_a_platform_failure_does_not() {
    let h = home();
    let mut fails = pooled("wp-algo-fail", 600);
    fails["AlgorithmSpecification"]["ContainerEntrypoint"] =
        json!(["sh", "-c", "sh cache.sh; exit 7"]);
    assert!(!h.train(&fails).status.success());
    assert_eq!(warm(&h, "wp-algo-fail")["Status"], "Available");
    assert!(h.train(&pooled("wp-after-fail", 60)).status.success());
    assert_eq!(previous_user(&h, "wp-after-fail"), "wp-algo-fail");
}

#[test]
#[cfg_attr(
    not(feature = "netns"),
    ignore = "needs --features netns (network namespaces)"
)]
fn a_multi_host_pool_keeps_its_network() {
    let h = home();
    let mut first = pooled("wp-net-1", 600);
    first["ResourceConfig"]["InstanceCount"] = json!(2);
    let out = h.train(&first);
    assert!(out.status.success(), "{}", text(&out));
    let log = |n: &str| {
        std::fs::read_to_string(h.home.path().join(format!("jobs/{n}/logs/platform.log"))).unwrap()
    };
    assert!(
        log("wp-net-1").contains("own network namespaces"),
        "feature netns: no network namespaces here\n{}",
        log("wp-net-1")
    );
    let mut second = pooled("wp-net-2", 600);
    second["ResourceConfig"]["InstanceCount"] = json!(2);
    let out = h.train(&second);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        log("wp-net-2").contains("The warm pool's network is reused"),
        "{}",
        log("wp-net-2")
    );
    // Each host has its own cache, handed from the same host of the earlier job.
    let files = untar(&h.object("out", "jobs/wp-net-2/output/model.tar.gz"));
    assert_eq!(file_text(&files, "previous-user").trim(), "wp-net-1");
    // Releasing the pool removes the kept network (counted by name: other tests create and
    // remove namespaces meanwhile).
    let id = trainyard::runner::network::job_id(&trainyard::warm_pools::network_name("wp-net-1"));
    let ours = || {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("ty{id}-"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(ours(), 2, "the pool keeps one namespace per host");
    assert!(
        h.run(&["jobs", "update", "wp-net-2", "--keep-alive", "0"])
            .status
            .success()
    );
    assert_eq!(ours(), 0, "the pool's namespaces are deleted");
}
